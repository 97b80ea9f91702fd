//! Realtime end to end, as `panal up` runs it: a WebSocket through the
//! gateway's `/v1/ws`, authenticated by a real sign-in; a publication from a
//! real service client (made with `panal auth clients create`, token from the
//! client-credentials grant) through the gateway; and a logout at auth that
//! closes the socket.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{PASSWORD, free_offset, panal, temp_dir, terminate, up_with};

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, as JSON (skipping the server's pings, `{}`).
pub(crate) async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame").unwrap().unwrap();
        let value: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        if value != json!({}) {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_through_the_gateway_gets_a_services_publication_and_closes_at_logout() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();

    // A user, signed in through the gateway.
    let (user_id, access) = sign_up(&http, &gateway, "Rita").await;
    let channel = format!("user:{user_id}");

    // Its socket, through the gateway, no token on the upgrade.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/v1/ws", 8000 + offset)).await.unwrap();
    ws.send(Message::text(json!({"id": 1, "connect": {"token": access}}).to_string())).await.unwrap();
    let connected = next_json(&mut ws).await;
    assert!(connected["connect"]["client"].is_string(), "{connected}");
    ws.send(Message::text(json!({"id": 2, "subscribe": {"channel": channel}}).to_string())).await.unwrap();
    let subscribed = next_json(&mut ws).await;
    assert_eq!(subscribed["id"], 2);
    assert!(subscribed.get("error").is_none(), "{subscribed}");

    // A service client, as an operator makes one, publishes to the user.
    let out = panal()
        .args(["auth", "clients", "create", "--name", "notify", "--scope", "realtime:publish", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        printed.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).expect("id and secret printed")
    };
    let (id, secret) = (field("client_id:"), field("client_secret:"));
    let grant: Value = http
        .post(format!("{gateway}/v1/auth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "realtime:publish")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let service = grant["access_token"].as_str().expect("a client token").to_owned();
    let r = http
        .post(format!("{gateway}/v1/realtime/publish"))
        .bearer_auth(&service)
        .json(&json!({"channel": channel, "data": {"type": "hello", "text": "<b>kept as text</b>"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let push = next_json(&mut ws).await;
    assert_eq!(push["push"]["channel"], channel.as_str());
    assert_eq!(push["push"]["pub"]["data"], json!({"type": "hello", "text": "<b>kept as text</b>"}));
    assert_eq!(push["push"]["pub"]["offset"], 1);

    // Logging out at auth closes the socket: session revoked, 3503.
    let r = http.post(format!("{gateway}/v1/auth/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = ws.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the socket is closed after the logout");
    assert_eq!(code, Some(3503));
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// Signs up and in through the gateway; the user's id and access token.
pub(crate) async fn sign_up(http: &reqwest::Client, gateway: &str, name: &str) -> (String, String) {
    let email = format!("{}@example.com", name.to_lowercase());
    let account = json!({"email": email, "password": PASSWORD, "display_name": name});
    assert_eq!(http.post(format!("{gateway}/v1/auth/register")).json(&account).send().await.unwrap().status(), 202);
    let login = json!({"email": email, "password": PASSWORD});
    let tokens: Value =
        http.post(format!("{gateway}/v1/auth/login")).json(&login).send().await.unwrap().json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let me: Value =
        http.get(format!("{gateway}/v1/auth/me")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    (me["id"].as_str().unwrap().to_owned(), access)
}

/// The chat of seed 001, as `panal up` runs it, with the Centrifugo SDK for
/// Python as every user's client: messages sent over the socket (`rpc`) and
/// over HTTP reach every member in order; a member who was away recovers
/// exactly what they missed; typing is live only; a stranger can neither
/// listen nor post; after Bob blocks Ada, nothing of hers reaches him.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_the_gateway_with_the_python_sdk() {
    if !super::enabled("PANAL_TEST_PYTHON_CLIENTS", "centrifuge-python") {
        return;
    }
    let dir = temp_dir();
    let offset = free_offset();
    // The script posts faster than people do: chat's per-user limit is raised.
    let limits = [("PANAL_CHAT__MESSAGES_PER_MINUTE", "6000"), ("PANAL_CHAT__MESSAGE_BURST", "1000")];
    let (mut running, _) = up_with(&dir, offset, &limits, Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let mut users = Vec::new();
    for name in ["Ada", "Bob", "Cy", "Eve"] {
        users.push(sign_up(&http, &gateway, name).await);
    }
    let room: Value = http
        .post(format!("{gateway}/v1/chat/rooms"))
        .bearer_auth(&users[0].1)
        .json(&json!({"name": "lobby", "visibility": "public"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = room["id"].as_str().expect("a room").to_owned();
    for (_, token) in &users[1..3] {
        let r = http.post(format!("{gateway}/v1/chat/rooms/{room}/join")).bearer_auth(token).json(&json!({})).send();
        assert_eq!(r.await.unwrap().status(), 200);
    }
    let mut args = vec![format!("ws://127.0.0.1:{}/v1/ws", 8000 + offset), gateway.clone(), room];
    for (id, token) in &users {
        args.push(id.clone());
        args.push(token.clone());
    }
    client_script("chat.py", args).await;
    assert!(terminate(&mut running).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// A live match as `panal up` runs it, with the Centrifugo SDK for Python as
/// the clients: game publishes its frames through realtime in its own name
/// (the service client `panal up` registered for it), players and a
/// spectator receive them at 30 Hz through the gateway's socket, inputs and
/// heartbeats go over the socket's rpc, the spectator may only watch, and
/// the last frame and the stored result name the same winner; stats rates
/// the match, game's queue follows the new rating, and `panal stats
/// rebuild` afterwards changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_through_the_gateway_with_the_python_sdk() {
    if !super::enabled("PANAL_TEST_PYTHON_CLIENTS", "centrifuge-python") {
        return;
    }
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let mut args = vec![format!("ws://127.0.0.1:{}/v1/ws", 8000 + offset), gateway.clone()];
    for name in ["Ada", "Bob", "Eve"] {
        let (id, token) = sign_up(&http, &gateway, name).await;
        args.extend([id, token]);
    }
    client_script("game.py", args).await;
    assert!(terminate(&mut running).success());
    // Stats' numbers from the match the clients played rebuild the same.
    let out = panal().args(["stats", "rebuild", "--data-dir"]).arg(&dir).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    // (the played match, and the invitation's, which its players left)
    assert!(
        said.starts_with("stats rebuilt from 2 matches") && said.contains(": 2 player lines, 0 ratings changed"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs one of realtime's client scripts (they share a harness there) and
/// fails with its output unless it succeeded.
async fn client_script(name: &'static str, args: Vec<String>) {
    let script = format!("{}/../realtime/tests/api/clients/{name}", env!("CARGO_MANIFEST_DIR"));
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new("python3").arg(script).args(&args).output())
            .await
            .unwrap()
            .expect("run python3");
    assert!(
        out.status.success(),
        "{name}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
