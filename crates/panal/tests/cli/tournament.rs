//! An online tournament as `panal up` runs it, through the gateway: four
//! players enter under aliases, the organiser starts it, the tournament
//! service has each match made in game as soon as its players are known,
//! the results come back from game (here every match is decided by a
//! forfeit: the second player leaves), the bracket advances by itself to
//! its final, and the tournament ends with its standings.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::realtime::sign_up;
use super::{call, free_offset, temp_dir, terminate, up_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_tournament_plays_its_matches_in_game_to_the_end() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let mut players = Vec::new();
    for name in ["Ada", "Bob", "Cy", "Dee"] {
        players.push(sign_up(&http, &gateway, name).await);
    }
    let host = players[0].1.clone();
    let (status, t) = call(
        &http,
        reqwest::Method::POST,
        format!("{gateway}/v1/tournament/tournaments"),
        &host,
        json!({"name": "Gateway cup", "format": "single_elimination", "kind": "online", "capacity": 4}),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let base = format!("{gateway}/v1/tournament/tournaments/{id}");
    for (n, (_, token)) in players.iter().enumerate() {
        let (status, e) = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/entrants"),
            token,
            json!({"alias": format!("Champ {n}")}),
        )
        .await;
        assert_eq!(status, 201, "{e}");
    }
    let (status, t) = call(&http, reqwest::Method::POST, format!("{base}/start"), &host, json!({})).await;
    assert_eq!(status, 200, "{t}");
    let token_of = |user: &str| players.iter().find(|(id, _)| id == user).unwrap().1.clone();

    // Each match, once game has it: live, a tournament's; its second player
    // leaves (a forfeit), and the bracket moves on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut decided = 0;
    loop {
        let (_, t) = call(&http, reqwest::Method::GET, base.clone(), &host, Value::Null).await;
        if t["status"] == "finished" {
            assert_eq!(decided, 3, "four entrants play three matches");
            let standings = t["standings"].as_array().unwrap();
            assert_eq!(standings.len(), 4);
            assert_eq!(standings[0]["place"], 1);
            assert!(standings[0]["alias"].as_str().unwrap().starts_with("Champ"));
            break;
        }
        assert!(Instant::now() < deadline, "the tournament did not end: {t}");
        for m in t["matches"].as_array().unwrap() {
            let (Some(game_id), true) = (m["game_match_id"].as_str(), m["winner"].is_null()) else { continue };
            let leaver = m["b"].as_str().unwrap();
            let (_, game_match) =
                call(&http, reqwest::Method::GET, format!("{gateway}/v1/game/matches/{game_id}"), &host, Value::Null)
                    .await;
            if game_match["status"] != "live" {
                continue;
            }
            assert_eq!(game_match["origin"], "tournament");
            let (status, _) = call(
                &http,
                reqwest::Method::POST,
                format!("{gateway}/v1/game/matches/{game_id}/leave"),
                &token_of(leaver),
                json!({}),
            )
            .await;
            assert_eq!(status, 204);
            decided += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each pair of players was called in their direct conversation too.
    let (ada_id, ada) = &players[0];
    let (_, conversations) =
        call(&http, reqwest::Method::GET, format!("{gateway}/v1/chat/conversations"), ada, Value::Null).await;
    let mut cards = 0;
    for c in conversations.as_array().unwrap() {
        let cid = c["id"].as_str().unwrap();
        let (_, messages) = call(
            &http,
            reqwest::Method::GET,
            format!("{gateway}/v1/chat/conversations/{cid}/messages"),
            ada,
            Value::Null,
        )
        .await;
        for m in messages["items"].as_array().unwrap() {
            if m["card"]["type"] == "tournament_call" {
                assert!(m["card"]["title"].as_str().unwrap().starts_with("Gateway cup"), "{m}");
                cards += 1;
            }
        }
    }
    assert!(cards >= 1, "Ada ({ada_id}) was called in chat to her first match: {conversations}");
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// A tournament of bots: the organiser enters four of the AI service's
/// bots; game seats them in the tournament's matches itself, knows them as
/// bots (the AI service announced them), and the AI service plays every
/// match a bot of its own was seated in, over the socket, to the final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tournament_of_bots_is_played_to_its_end() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let (_, host) = sign_up(&http, &gateway, "Ada").await;
    let (status, t) = call(&http, reqwest::Method::POST, format!("{gateway}/v1/tournament/tournaments"), &host,
        json!({"name": "Robot cup", "format": "single_elimination", "kind": "online", "capacity": 4, "points_to_win": 1})).await;
    assert_eq!(status, 201, "{t}");
    let base = format!("{gateway}/v1/tournament/tournaments/{}", t["id"].as_str().unwrap());
    let mut bots = Vec::new();
    for level in ["easy", "medium", "hard", "hard"] {
        let (status, e) =
            call(&http, reqwest::Method::POST, format!("{base}/bots"), &host, json!({"level": level})).await;
        assert_eq!(status, 201, "{e}");
        bots.push(e["entrant_id"].as_str().unwrap().to_owned());
    }
    let mut distinct = bots.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four different bots (two of them hard)");
    assert_eq!(
        call(&http, reqwest::Method::POST, format!("{base}/bots"), &host, json!({"level": "godlike"})).await.0,
        422
    );
    let (status, t) = call(&http, reqwest::Method::POST, format!("{base}/start"), &host, json!({})).await;
    assert_eq!(status, 200, "{t}");
    let deadline = Instant::now() + Duration::from_secs(240);
    let t = loop {
        let (_, t) = call(&http, reqwest::Method::GET, base.clone(), &host, Value::Null).await;
        if t["status"] == "finished" {
            break t;
        }
        assert!(Instant::now() < deadline, "the bots' tournament did not end: {t}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let standings = t["standings"].as_array().unwrap();
    assert_eq!(standings.len(), 4);
    assert!(bots.contains(&standings[0]["entrant_id"].as_str().unwrap().to_owned()));
    // Every match was played in game by bots marked as bots, and none was a forfeit.
    for m in t["matches"].as_array().unwrap().iter().filter(|m| !m["b"].is_null()) {
        let id = m["game_match_id"].as_str().unwrap();
        let (_, g) =
            call(&http, reqwest::Method::GET, format!("{gateway}/v1/game/matches/{id}"), &host, Value::Null).await;
        assert_eq!(g["status"], "finished", "{g}");
        assert_eq!(g["result"]["forfeit"], false, "the bots played it: {g}");
        assert!(g["players"].as_array().unwrap().iter().all(|p| p["bot"] == true), "{g}");
    }

    // It ends in the ledger: `panal ledger verify` checks the result in
    // the log, the signed checkpoint and the chain, through the gateway.
    let id = t["id"].as_str().unwrap();
    let verify = || {
        std::process::Command::new(super::PANAL).args(["ledger", "verify", id, "--gateway", &gateway]).output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = verify();
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "never verified: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(out.ends_with("verified\n") && out.contains("ok   chain_root"), "{out}");
    let winner = standings[0]["alias"].as_str().unwrap();
    assert!(out.contains(&format!("  1. {winner} (")), "{out}");
    // The winner changed in the ledger's database: caught, and named.
    let ledger_db =
        kit::db::Db::connect(&kit::db::Db::sqlite_url(&dir.join("ledger.db")), &kit::config::DbSettings::default())
            .await
            .unwrap();
    let kit::db::Db::Sqlite(sqlite) = &ledger_db else { unreachable!() };
    sqlx::query("UPDATE entries SET data = replace(data, '\"place\":1', '\"place\":9')")
        .execute(&sqlite.write)
        .await
        .unwrap();
    let out = verify();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL inclusion") && text.ends_with("NOT verified\n"), "{text}");
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}
