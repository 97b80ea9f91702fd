//! Several game processes sharing the live matches, as real processes: one
//! is killed with SIGKILL mid-match and another takes its match over.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::realtime::sign_up;
use super::{Running, call, free_offset, panal, temp_dir, terminate, up_with};

/// `panal serve game` on `port`, on the SQLite file `db` that the other
/// game processes use too, beside `panal up`'s auth, realtime and chat.
fn serve_game(
    dir: &std::path::Path,
    name: &str,
    port: u16,
    offset: u16,
    db: &str,
    client: &(String, String),
) -> Running {
    let up = |service_port: u16| format!("http://127.0.0.1:{}", service_port + offset);
    let child = panal()
        .env("PANAL_DATA_DIR", dir.join(name))
        .env("PANAL_DATABASE_URL", db)
        .env("PANAL_AUTH_URL", up(8001))
        .env("PANAL_USERS_URL", up(8002))
        .env("PANAL_REALTIME_URL", up(8003))
        .env("PANAL_CHAT_URL", up(8004))
        .env("PANAL_STATS_URL", up(8007))
        .env("PANAL_GAME__LEASE_SECS", "1")
        .env("PANAL_GAME__ADVERTISE_URL", format!("http://127.0.0.1:{port}"))
        .env("PANAL_CLIENTS__GAME__ID", &client.0)
        .env("PANAL_CLIENTS__GAME__SECRET", &client.1)
        .args(["serve", "game", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

fn conceded(state: &Value) -> u64 {
    state["paddles"].as_array().map_or(0, |p| p.iter().map(|p| p["conceded"].as_u64().unwrap_or(0)).sum())
}

/// Two `panal serve game` processes on one database: B makes a match live
/// and runs it; the players talk to C, which forwards to B; B is killed with
/// SIGKILL after a goal; C takes the match over when B's lease runs out,
/// paused with the score intact, and play goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_game_process_s_match_is_taken_over_by_another() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    // The game processes' service client, registered as an operator would.
    let out = panal()
        .args(["auth", "clients", "create", "--name", "game-replicas", "--scope", "realtime:publish"])
        .args(["--scope", "chat:post", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| said.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_owned();
    let client = (field("client_id:"), field("client_secret:"));
    let db = kit::db::Db::sqlite_url(&dir.join("replicas-game.db"));
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let mut b = serve_game(&dir, "b", ports[0], offset, &db, &client);
    let b_url = format!("http://127.0.0.1:{}", ports[0]);
    assert!(kit::http::wait_ready(&http, &format!("{b_url}/readyz"), Duration::from_secs(15)).await, "B did not start");
    let mut c = serve_game(&dir, "c", ports[1], offset, &db, &client);
    let c_url = format!("http://127.0.0.1:{}", ports[1]);
    assert!(kit::http::wait_ready(&http, &format!("{c_url}/readyz"), Duration::from_secs(15)).await, "C did not start");

    let (_, ada) = sign_up(&http, &gateway, "Ada").await;
    let (_, bob) = sign_up(&http, &gateway, "Bob").await;
    let post = reqwest::Method::POST;
    let (status, created) = call(
        &http,
        post.clone(),
        format!("{b_url}/v1/game/matches"),
        &ada,
        json!({"mode": "duel", "options": {"points_to_win": 11}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, joined) =
        call(&http, post.clone(), format!("{b_url}/v1/game/matches/{id}/join"), &bob, json!({})).await;
    assert_eq!((status, joined["status"].as_str()), (200, Some("live")), "{joined}");

    // Through C (forwarded to B): present, and watching until a goal.
    let play = |until: fn(&Value) -> bool, within: Duration| {
        let (http, c_url, id, ada, bob) = (http.clone(), c_url.clone(), id.clone(), ada.clone(), bob.clone());
        async move {
            let deadline = Instant::now() + within;
            loop {
                for token in [&ada, &bob] {
                    call(
                        &http,
                        reqwest::Method::POST,
                        format!("{c_url}/v1/game/matches/{id}/heartbeat"),
                        token,
                        json!({}),
                    )
                    .await;
                }
                let (status, state) =
                    call(&http, reqwest::Method::GET, format!("{c_url}/v1/game/matches/{id}/state"), &ada, Value::Null)
                        .await;
                if status == 200 && until(&state) {
                    return state;
                }
                assert!(Instant::now() < deadline, "not within {within:?}: {status} {state}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let scored = play(|s| conceded(s) > 0, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.0.kill().unwrap(); // SIGKILL
    b.0.wait().unwrap();

    // C takes it over when B's lease (1 s) runs out: paused, score intact.
    let resumed = play(|s| s["paused"] == true, Duration::from_secs(15)).await;
    assert!(conceded(&resumed) >= conceded(&scored), "{scored} → {resumed}");
    play(|s| s["paused"] == false, Duration::from_secs(10)).await;
    let (_, stored) =
        call(&http, reqwest::Method::GET, format!("{c_url}/v1/game/matches/{id}"), &ada, Value::Null).await;
    assert_eq!(stored["status"], "live");

    assert!(terminate(&mut c).success());
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// A TCP proxy on 127.0.0.1 that holds every chunk for `delay` each way:
/// a slow link (2 × `delay` of round trip) without root or `tc netem`. Its
/// address.
async fn slow_link(upstream: std::net::SocketAddr, delay: Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
        let writer = tokio::spawn(async move {
            while let Some((due, chunk)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                if to.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = to.shutdown().await;
        });
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        drop(tx);
        let _ = writer.await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pipe(client_read, server_write, delay));
            tokio::spawn(pipe(server_read, client_write, delay));
        }
    });
    addr
}

fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux").args(args).output().expect("run tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The terminal client in tmux against a scripted player, over a link with
/// 100 ms of round trip: Ada (with a second factor) signs in with `panal
/// pong` and joins the match Bob created; her arrow keys reach the server
/// over the socket's rpc; the screen shows the score and the latency, and
/// how the match ended, which the stored result confirms. Then Bob's client
/// queues, is matched with a scripted Ada by the queue, and leaves: a
/// forfeit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_plays_a_scripted_player_in_tmux() {
    if !super::enabled("PANAL_TEST_TMUX", "tmux") {
        return;
    }
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let (ada_id, ada) = sign_up(&http, &gateway, "Ada").await;
    let (_, bob) = sign_up(&http, &gateway, "Bob").await;
    // Ada turns on the second factor.
    let post = reqwest::Method::POST;
    let (status, enrolment) =
        call(&http, post.clone(), format!("{gateway}/v1/auth/mfa/totp"), &ada, json!({"password": super::PASSWORD}))
            .await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = auth::totp::decode_secret(enrolment["secret"].as_str().unwrap()).unwrap();
    let step = auth::totp::step_at(chrono::Utc::now().timestamp());
    let code = auth::totp::code_at(&secret, step);
    let (status, _) =
        call(&http, post.clone(), format!("{gateway}/v1/auth/mfa/totp/confirm"), &ada, json!({"code": code})).await;
    assert_eq!(status, 200);
    // Bob creates the match; he is a script that keeps present.
    let (status, created) = call(
        &http,
        post.clone(),
        format!("{gateway}/v1/game/matches"),
        &bob,
        json!({"mode": "duel", "options": {"points_to_win": 2}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let beats = {
        let (http, gateway, id, bob) = (http.clone(), gateway.clone(), id.clone(), bob.clone());
        tokio::spawn(async move {
            loop {
                call(
                    &http,
                    reqwest::Method::POST,
                    format!("{gateway}/v1/game/matches/{id}/heartbeat"),
                    &bob,
                    json!({}),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // Ada plays in tmux, over a link with 100 ms of round trip (the next
    // step's code: the one just used works once).
    let slow = slow_link(format!("127.0.0.1:{}", 8000 + offset).parse().unwrap(), Duration::from_millis(50)).await;
    let session = format!("panal-pong-{}", uuid::Uuid::new_v4().simple());
    let next_code = auth::totp::code_at(&secret, step + 1);
    let command = format!(
        "PANAL_PASSWORD='{}' {} pong --gateway http://{slow} --email ada@example.com --code {next_code} --match {id} 2>{}; sleep 60",
        super::PASSWORD,
        env!("CARGO_BIN_EXE_panal"),
        dir.join("pong.err").display()
    );
    tmux(&["new-session", "-d", "-s", &session, "-x", "100", "-y", "32", &command]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &session]);
    let wait_for = |what: &'static str, within: Duration| {
        let err = dir.join("pong.err");
        async move {
            let deadline = Instant::now() + within;
            loop {
                let shown = screen();
                if shown.contains(what) {
                    return shown;
                }
                let errors = std::fs::read_to_string(&err).unwrap_or_default();
                assert!(Instant::now() < deadline, "the screen never showed {what:?}:\n{shown}\n{errors}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let shown = wait_for("latency", Duration::from_secs(20)).await;
    assert!(shown.contains("you 0"), "{shown}");
    // Her arrow keys reach the server: her paddle's last input moves on.
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen == 0 {
        tmux(&["send-keys", "-t", &session, "Up"]);
        let (_, state) =
            call(&http, reqwest::Method::GET, format!("{gateway}/v1/game/matches/{id}/state"), &bob, Value::Null).await;
        seen = state["paddles"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["user_id"] == ada_id.as_str()))
            .map_or(0, |p| p["last_seq"].as_u64().unwrap_or(0));
        assert!(Instant::now() < deadline, "no input of hers reached the server: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The latency shown is the link's: 100 ms and more.
    let shown = wait_for(" ms", Duration::from_secs(5)).await;
    let latency: u64 = shown
        .split("latency ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no latency on the screen:\n{shown}"));
    assert!((100..1000).contains(&latency), "latency {latency} ms over a 100 ms link:\n{shown}");
    // Nobody plays much: the serves go in, and the screen says who won.
    let shown = wait_for("q to quit", Duration::from_secs(90)).await;
    // The last frame may reach the screen before the result is committed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let (_, stored) =
            call(&http, reqwest::Method::GET, format!("{gateway}/v1/game/matches/{id}"), &ada, Value::Null).await;
        if stored["status"] == "finished" {
            break stored;
        }
        assert!(Instant::now() < deadline, "the match is never recorded as finished: {stored}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let she_won = stored["result"]["winner"] == ada_id.as_str();
    assert!(shown.contains(if she_won { "you won" } else { "you lost" }), "{shown}\n{stored}");
    tmux(&["send-keys", "-t", &session, "q"]);
    beats.abort();
    // (Killed at the end: killing tmux's last session stops its server,
    // which a new session started at that moment can race with.)
    let first_session = session;

    // Bob, in the terminal this time, queues; Ada (a script now) queues too,
    // and the queue makes their match; Bob leaves with q: a forfeit.
    let session = format!("panal-pong-{}", uuid::Uuid::new_v4().simple());
    let bob_err = dir.join("pong-bob.err");
    let command = format!(
        "PANAL_PASSWORD='{}' {} pong --gateway http://{slow} --email bob@example.com 2>{}; sleep 60",
        super::PASSWORD,
        env!("CARGO_BIN_EXE_panal"),
        bob_err.display()
    );
    tmux(&["new-session", "-d", "-s", &session, "-x", "100", "-y", "32", &command]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &session]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while call(&http, reqwest::Method::GET, format!("{gateway}/v1/game/queue"), &bob, Value::Null).await.0 != 200 {
        let errors = std::fs::read_to_string(&bob_err).unwrap_or_default();
        assert!(Instant::now() < deadline, "Bob's client never queued: {}\n{errors}", screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) =
        call(&http, post.clone(), format!("{gateway}/v1/game/queue"), &ada, json!({"mode": "duel"})).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !screen().contains("latency") {
        assert!(Instant::now() < deadline, "Bob's match never showed: {}", screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !screen().contains("you left the match (a forfeit)") {
        assert!(Instant::now() < deadline, "Bob's client did not leave: {}", screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Recorded as finished a moment after the client is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let queued = loop {
        let (_, finished) =
            call(&http, reqwest::Method::GET, format!("{gateway}/v1/game/matches?status=finished"), &ada, Value::Null)
                .await;
        if let Some(m) = finished["items"].as_array().unwrap().iter().find(|m| m["origin"] == "queue") {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "the queue's match is never recorded as finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (queued["result"]["winner"].as_str(), queued["result"]["forfeit"].as_bool()),
        (Some(ada_id.as_str()), Some(true))
    );
    tmux(&["kill-session", "-t", &session]);
    tmux(&["kill-session", "-t", &first_session]);
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}
