//! Bots, as `panal up` runs them: a person creates a match and seats a bot
//! in it through the gateway; the bot (an identity auth made, its token
//! carrying the `bot` role) joins through game's API and plays over
//! realtime's socket, pressing and releasing keys; the match is played to
//! its end — across a restart of `panal up` — and recorded with the bot
//! marked as a bot everywhere.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::realtime::sign_up;
use super::{call, free_offset, temp_dir, terminate, up_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_seated_through_the_gateway_plays_a_person_to_the_end() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let (ada_id, ada) = sign_up(&http, &gateway, "Ada").await;
    let (_, bob) = sign_up(&http, &gateway, "Bob").await;
    let post = |url: String, token: String, body: Value| {
        let http = http.clone();
        async move { call(&http, reqwest::Method::POST, url, &token, body).await }
    };

    let (status, levels) =
        call(&http, reqwest::Method::GET, format!("{gateway}/v1/ai/levels"), &ada, Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(levels.as_array().unwrap().len(), 3);

    let (status, created) = post(
        format!("{gateway}/v1/game/matches"),
        ada.clone(),
        json!({"mode": "duel", "options": {"points_to_win": 3}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let bots = format!("{gateway}/v1/ai/matches/{id}/bots");

    // Bad input first: the match is untouched.
    assert_eq!(post(bots.clone(), ada.clone(), json!({"level": "godlike"})).await.0, 422);
    assert_eq!(post(bots.clone(), ada.clone(), json!({})).await.0, 422);
    assert_eq!(post(bots.clone(), bob.clone(), json!({"level": "hard"})).await.0, 403, "not a player of it");
    let missing = format!("{gateway}/v1/ai/matches/{}/bots", uuid::Uuid::now_v7());
    assert_eq!(post(missing, ada.clone(), json!({"level": "hard"})).await.0, 404);
    let anonymous = http.post(&bots).json(&json!({"level": "hard"})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let (status, seated) = post(bots.clone(), ada.clone(), json!({"level": "hard"})).await;
    assert_eq!(status, 201, "{seated}");
    assert_eq!(seated["started"], true);
    let bot_id = seated["bot"]["id"].as_str().unwrap().to_owned();
    assert!(seated["bot"]["name"].as_str().unwrap().ends_with("(hard)"));
    // Live now: no more bots.
    assert_eq!(post(bots.clone(), ada.clone(), json!({"level": "easy"})).await.0, 409);

    // Ada stays (heartbeats) but never moves; the bot plays. Its inputs
    // reach game over the socket: its paddle's last applied input rises.
    // Once it has pressed keys, `panal up` is stopped and started again:
    // game resumes the match, the AI service resumes the bot, which plays on.
    let state = format!("{gateway}/v1/game/matches/{id}/state");
    let heartbeat = format!("{gateway}/v1/game/matches/{id}/heartbeat");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut bot_inputs = 0;
    let mut at_restart = None;
    loop {
        post(heartbeat.clone(), ada.clone(), json!({})).await;
        let (status, frame) = call(&http, reqwest::Method::GET, state.clone(), &ada, Value::Null).await;
        if status == 409 {
            break;
        }
        assert!(Instant::now() < deadline, "the match did not end: {status} {frame}");
        if status == 503 {
            // Between game processes for a moment after the restart.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 200, "{frame}");
        let bot_paddle = frame["paddles"].as_array().unwrap().iter().find(|p| p["user_id"] == bot_id.as_str()).unwrap();
        bot_inputs = bot_inputs.max(bot_paddle["last_seq"].as_u64().unwrap());
        if bot_inputs > 0 && at_restart.is_none() {
            assert!(terminate(&mut running).success());
            running = up_with(&dir, offset, &[], Stdio::null()).0;
            at_restart = Some(bot_inputs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(bot_inputs > 0, "the bot pressed keys");
    assert!(bot_inputs > at_restart.unwrap(), "the resumed bot pressed keys again ({bot_inputs})");

    let (_, over) =
        call(&http, reqwest::Method::GET, format!("{gateway}/v1/game/matches/{id}"), &ada, Value::Null).await;
    assert_eq!(over["status"], "finished", "{over}");
    assert_eq!(over["result"]["forfeit"], false);
    // A bot that looks once a second can miss even against a player who
    // never moves (the benchmark: a hard bot loses about 1 in 70 such
    // matches to 3): it is asserted to have scored, not to have won.
    let bot_won = over["result"]["winner"] == bot_id.as_str();
    for p in over["result"]["players"].as_array().unwrap() {
        assert_eq!(p["bot"], p["user_id"] == bot_id.as_str(), "{p}");
        if p["bot"] == true {
            assert!(p["scored"].as_u64().unwrap() > 0, "the bot scored: {over}");
        }
    }
    assert!(over["players"].as_array().unwrap().iter().any(|p| p["user_id"] == bot_id.as_str() && p["bot"] == true));

    // The AI service and stats record it, the bot as a bot.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, all) = call(&http, reqwest::Method::GET, format!("{gateway}/v1/ai/bots"), &ada, Value::Null).await;
        let bot = all.as_array().unwrap().iter().find(|b| b["id"] == bot_id.as_str()).cloned().unwrap();
        let (status, stats) =
            call(&http, reqwest::Method::GET, format!("{gateway}/v1/stats/players/{bot_id}"), &ada, Value::Null).await;
        if bot["played"] == 1 && status == 200 {
            assert_eq!(bot["won"] == 1, bot_won, "{bot}");
            assert_eq!(bot["playing"], 0, "{bot}");
            assert_eq!(stats["modes"][0]["bot"], true, "{stats}");
            assert!(stats["modes"][0].get("rank").is_none_or(Value::is_null), "bots are never ranked: {stats}");
            break;
        }
        assert!(Instant::now() < deadline, "the result was not recorded: {bot} {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, ada_stats) =
        call(&http, reqwest::Method::GET, format!("{gateway}/v1/stats/players/{ada_id}"), &ada, Value::Null).await;
    assert_eq!(
        ada_stats["modes"][0]["rated_matches"].as_u64().unwrap_or(0),
        0,
        "a match with a bot is never rated: {ada_stats}"
    );
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// Alone in the queue for longer than `game.bots_after_secs`, a person is
/// given a match whose other seat the AI service fills with a bot (game's
/// `bots_wanted`, consumed by the AI service); leaving it is a forfeit, and
/// the bot's record says it won.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_alone_in_the_queue_is_given_a_bot() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[("PANAL_GAME__BOTS_AFTER_SECS", "1")], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let (ada_id, ada) = sign_up(&http, &gateway, "Ada").await;
    let (status, _) =
        call(&http, reqwest::Method::POST, format!("{gateway}/v1/game/queue"), &ada, json!({"mode": "duel"})).await;
    assert_eq!(status, 202);
    // A live match of Ada's with a bot, within seconds.
    let live = live_match_of(&http, &gateway, &ada, &ada_id).await;
    assert_eq!(live["origin"], "queue");
    let bot = live["players"].as_array().unwrap().iter().find(|p| p["bot"] == true).cloned().expect("a bot's seat");
    let bot_id = bot["user_id"].as_str().unwrap().to_owned();
    let id = live["id"].as_str().unwrap();
    let (status, _) =
        call(&http, reqwest::Method::POST, format!("{gateway}/v1/game/matches/{id}/leave"), &ada, json!({})).await;
    assert_eq!(status, 204);
    let record = won_once(&http, &gateway, &ada, &bot_id).await;
    // A 1500 player is given a medium bot.
    assert_eq!(record["level"], "medium", "{record}");
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// A bot invited from chat: the player picks a bot and invites it like
/// anyone (`POST /v1/game/invitations`); the card is in their direct
/// conversation with the bot (chat knows bots from `bot_created`); game
/// tells the AI service (`invitation_sent`), which accepts in the bot's name,
/// and the match is live with the bot seated and marked as a bot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_invited_from_chat_accepts_and_plays() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let (ada_id, ada) = sign_up(&http, &gateway, "Ada").await;
    let (status, bot) =
        call(&http, reqwest::Method::POST, format!("{gateway}/v1/ai/bots"), &ada, json!({"level": "hard"})).await;
    assert_eq!(status, 200, "{bot}");
    let bot_id = bot["id"].as_str().unwrap().to_owned();
    // Chat learns of a new bot from the bus: a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let invitation = loop {
        let (status, invitation) = call(
            &http,
            reqwest::Method::POST,
            format!("{gateway}/v1/game/invitations"),
            &ada,
            json!({"to": bot_id, "options": {"points_to_win": 1}}),
        )
        .await;
        if status == 201 {
            break invitation;
        }
        assert!(Instant::now() < deadline, "the bot could not be invited: {status} {invitation}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The card, in Ada's direct conversation with the bot.
    let (_, conversations) =
        call(&http, reqwest::Method::GET, format!("{gateway}/v1/chat/conversations"), &ada, Value::Null).await;
    let direct = conversations.as_array().unwrap().iter().find(|c| c["kind"] == "direct").cloned().unwrap();
    assert_eq!(direct["peer"]["id"], bot_id.as_str(), "{direct}");
    let (_, messages) = call(
        &http,
        reqwest::Method::GET,
        format!("{gateway}/v1/chat/conversations/{}/messages", direct["id"].as_str().unwrap()),
        &ada,
        Value::Null,
    )
    .await;
    let card = messages["items"].as_array().unwrap().iter().find(|m| m["card"]["type"] == "game_invitation").cloned();
    assert_eq!(card.unwrap()["card"]["reference"], invitation["id"], "{messages}");
    // The AI service accepts for the bot: the match is live.
    let live = live_match_of(&http, &gateway, &ada, &ada_id).await;
    assert_eq!(live["origin"], "invitation");
    let seat = live["players"].as_array().unwrap().iter().find(|p| p["user_id"] == bot_id.as_str()).cloned();
    assert_eq!(seat.unwrap()["bot"], true, "{live}");
    // Ada leaves: the bot's record has the win.
    let id = live["id"].as_str().unwrap();
    let (status, _) =
        call(&http, reqwest::Method::POST, format!("{gateway}/v1/game/matches/{id}/leave"), &ada, json!({})).await;
    assert_eq!(status, 204);
    won_once(&http, &gateway, &ada, &bot_id).await;
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// The live match `user` plays in, once there is one (within 20 s).
async fn live_match_of(http: &reqwest::Client, gateway: &str, token: &str, user: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) =
            call(http, reqwest::Method::GET, format!("{gateway}/v1/game/matches?status=live"), token, Value::Null)
                .await;
        let mine = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["players"].as_array().unwrap().iter().any(|p| p["user_id"] == user))
            .cloned();
        if let Some(m) = mine {
            return m;
        }
        assert!(Instant::now() < deadline, "no live match with a bot: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bot's record, once it shows one win (within 15 s).
async fn won_once(http: &reqwest::Client, gateway: &str, token: &str, bot: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, all) = call(http, reqwest::Method::GET, format!("{gateway}/v1/ai/bots"), token, Value::Null).await;
        let record = all.as_array().unwrap().iter().find(|b| b["id"] == bot).cloned().unwrap();
        if record["won"] == 1 {
            return record;
        }
        assert!(Instant::now() < deadline, "the forfeit was not recorded: {record}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
