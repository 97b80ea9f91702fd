//! Realtime over a real socket: the Centrifugo SDKs for Python
//! (centrifuge-python, PyPI) and JavaScript (npm `centrifuge`, in Node) as
//! clients, and raw WebSocket clients for what no SDK sends. The SDK tests
//! run when `PANAL_TEST_PYTHON_CLIENTS=1` / `PANAL_TEST_NODE_CLIENTS=1` (CI
//! installs the clients and sets both); without them they say they skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;

use contracts::auth::SessionRevoked;
use futures_util::{SinkExt, StreamExt};
use kit::config::{Config, HttpSettings};
use kit::testing::{TestContext, TestIssuer, TestServer, assert_problem};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

struct Realtime {
    server: TestServer,
    issuer: TestIssuer,
    ctx: TestContext,
}

impl Realtime {
    async fn start() -> Self {
        let config = Config::from_toml("[realtime]\nconnect_timeout_ms = 1000\n").unwrap();
        let ctx = TestContext::new(config).await;
        let issuer = TestIssuer::start(&ctx.config).await;
        let ctx = ctx.with_issuer(&issuer);
        let service = kit::testing::server::<realtime::Realtime>(&ctx, None).await;
        let server = TestServer::spawn(service, HttpSettings::default()).await;
        Self { server, issuer, ctx }
    }

    fn ws(&self) -> String {
        format!("ws://{}/v1/ws", self.server.addr)
    }

    /// A service client's token, with `scope`.
    fn service_token(&self, scope: &str) -> String {
        let mut claims = self.issuer.claims(Uuid::new_v4(), &[]);
        claims.sid = None;
        claims.roles = Vec::new();
        claims.client_id = Some("chat".to_owned());
        claims.scope = Some(scope.to_owned());
        self.issuer.sign(&claims)
    }
}

fn python_clients() -> bool {
    if std::env::var("PANAL_TEST_PYTHON_CLIENTS").is_ok() {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (centrifuge-python): set PANAL_TEST_PYTHON_CLIENTS=1 with `pip install centrifuge-python` to run it"
    );
    false
}

fn run(script: &str, args: &[&str]) {
    let path = format!("{}/tests/api/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3").arg(&path).args(args).output().expect("run python3");
    assert!(
        out.status.success(),
        "{script}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_subscribes_receives_in_order_and_recovers_what_it_missed() {
    if !python_clients() {
        return;
    }
    let rt = Realtime::start().await;
    let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (my_token, other_token) = (rt.issuer.token(me, &[]), rt.issuer.token(other, &[]));
    let service = rt.service_token("realtime:publish");
    let publish = rt.server.url("/v1/realtime/publish");
    let (me, other) = (me.to_string(), other.to_string());
    let ws = rt.ws();
    tokio::task::spawn_blocking(move || {
        run("sdk.py", &[&ws, &publish, &service, &me, &my_token, &other, &other_token]);
    })
    .await
    .unwrap();
}

/// Two realtime replicas sharing channels through the real Redis, a Python
/// SDK client on each: publications made through either replica reach both
/// in one order with one numbering, a client that leaves one replica
/// recovers what it missed on the other, and presence, joins and leaves
/// span the replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_channels_through_redis() {
    if !python_clients() {
        return;
    }
    let Ok(redis) = std::env::var("PANAL_TEST_REDIS_URL") else {
        let _ =
            writeln!(std::io::stderr(), "SKIPPED (Redis): set PANAL_TEST_REDIS_URL=redis://127.0.0.1:6379 to run it");
        return;
    };
    let config = Config::from_toml(&format!("redis_url = \"{redis}\"\n")).unwrap();
    let ctx = TestContext::new(config).await;
    let issuer = TestIssuer::start(&ctx.config).await;
    let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (token, other_token) = (issuer.token(me, &[]), issuer.token(other, &[]));
    // A room channel for presence, granted by a stand-in owner to both.
    let owner = owner(vec![token.clone(), other_token.clone()]).await;
    let ctx = ctx.with_issuer(&issuer).with_peer(kit::service::Peer::at("chat", owner));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let service = kit::testing::server::<realtime::Realtime>(&ctx, None).await;
        replicas.push(TestServer::spawn(service, HttpSettings::default()).await);
    }
    let rt = Realtime { server: replicas.remove(0), issuer, ctx };
    let second = replicas.remove(0);
    let service = rt.service_token("realtime:publish");
    let args = [
        rt.ws(),
        format!("ws://{}/v1/ws", second.addr),
        rt.server.url("/v1/realtime/publish"),
        second.url("/v1/realtime/publish"),
        service,
        me.to_string(),
        token,
        other.to_string(),
        other_token,
        format!("chat:room-{}", Uuid::now_v7().simple()),
    ];
    tokio::task::spawn_blocking(move || run("replicas.py", &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_socket_is_a_coded_error_or_a_documented_close() {
    if !python_clients() {
        return;
    }
    let rt = Realtime::start().await;
    let token = rt.issuer.token(Uuid::now_v7(), &[]);
    let mut expired = rt.issuer.claims(Uuid::now_v7(), &[]);
    expired.iat -= 3600;
    expired.exp = chrono::Utc::now().timestamp() - 600;
    let expired = rt.issuer.sign(&expired);
    let ws = rt.ws();
    tokio::task::spawn_blocking(move || run("raw.py", &[&ws, &token, &expired])).await.unwrap();
}

#[tokio::test]
async fn only_a_service_client_with_the_scope_publishes_and_only_to_real_channels() {
    let rt = Realtime::start().await;
    let http = reqwest::Client::new();
    let url = rt.server.url("/v1/realtime/publish");
    let body = json!({"channel": format!("user:{}", Uuid::now_v7()), "data": {"hello": "world"}});
    let post = |token: Option<String>, body: serde_json::Value| {
        let mut request = http.post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_problem(post(None, body.clone()).await.unwrap(), 401, None).await;
    let user = rt.issuer.token(Uuid::now_v7(), &["admin"]);
    assert_problem(post(Some(user), body.clone()).await.unwrap(), 403, None).await;
    assert_problem(post(Some(rt.service_token("users:read")), body.clone()).await.unwrap(), 403, None).await;
    let token = rt.service_token("realtime:publish");
    let ok: serde_json::Value = post(Some(token.clone()), body.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(ok["offset"], 1);
    assert_eq!(ok["delivered"], 0);
    for bad in
        [json!({"channel": "nope:1", "data": 1}), json!({"channel": "user:x", "data": 1}), json!({"channel": "user:1"})]
    {
        let r = post(Some(token.clone()), bad.clone()).await.unwrap();
        assert!(r.status() == 422 || r.status() == 400, "{bad}: {}", r.status());
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{bad}");
    }
    // Not an upgrade: a problem document too.
    let r = http.get(rt.server.url("/v1/ws")).send().await.unwrap();
    assert!(r.status() == 400 || r.status() == 426, "{}", r.status());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

/// Live batches (a game server's frames): one request, many channels, for
/// whoever is subscribed now; no offsets, so nothing to recover. Refused
/// without the scope, and whole when any publication in it is bad.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_batch_reaches_every_channels_subscribers_now_and_is_checked_whole() {
    let rt = Realtime::start().await;
    let http = reqwest::Client::new();
    let url = rt.server.url("/v1/realtime/publish/live");
    let user = Uuid::now_v7();
    let mut ws = connected(&rt, &rt.issuer.token(user, &[])).await;
    ws.send(Message::text(json!({"id": 2, "subscribe": {"channel": format!("user:{user}")}}).to_string()))
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(reply["id"], 2, "{reply}");
    let token = rt.service_token("realtime:publish");
    let frames = |n: u64| {
        json!({"publications": [
            {"channel": format!("user:{user}"), "data": {"type": "frame", "tick": n}},
            {"channel": format!("user:{}", Uuid::now_v7()), "data": {"type": "frame", "tick": n}},
        ]})
    };
    let ok: serde_json::Value =
        http.post(&url).bearer_auth(&token).json(&frames(7)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ok["published"], 2, "{ok}");
    assert_eq!(ok["delivered"], 1, "{ok}");
    let push: serde_json::Value = serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(push["push"]["pub"]["data"]["tick"], 7, "{push}");
    assert!(push["push"]["pub"].get("offset").is_none(), "ephemeral: no offset: {push}");

    let user_token = rt.issuer.token(user, &["admin"]);
    assert_problem(http.post(&url).bearer_auth(&user_token).json(&frames(8)).send().await.unwrap(), 403, None).await;
    assert_problem(http.post(&url).json(&frames(8)).send().await.unwrap(), 401, None).await;
    let mut bad = frames(9);
    bad["publications"][1]["channel"] = json!("nope:1");
    let doc = assert_problem(http.post(&url).bearer_auth(&token).json(&bad).send().await.unwrap(), 422, None).await;
    assert!(doc.to_string().contains("publications[1].channel"), "{doc}");
    let many: Vec<_> = (0..=realtime::api::MAX_LIVE_BATCH).map(|_| frames(10)["publications"][0].clone()).collect();
    let r = http.post(&url).bearer_auth(&token).json(&json!({"publications": many})).send().await.unwrap();
    assert_problem(r, 422, None).await;
    // Nothing of the refused batches was delivered: the next push is tick 11.
    http.post(&url).bearer_auth(&token).json(&frames(11)).send().await.unwrap();
    let push: serde_json::Value = serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(push["push"]["pub"]["data"]["tick"], 11, "{push}");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw socket, connected with `token`; the connect reply is checked.
async fn connected(rt: &Realtime, token: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(rt.ws()).await.unwrap();
    let connect = json!({"id": 1, "connect": {"token": token}}).to_string();
    ws.send(Message::text(connect)).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    ws
}

/// The close code the server ends `ws` with, within 15 seconds.
async fn close_code(ws: &mut Socket) -> Option<u16> {
    let read = async {
        while let Some(message) = ws.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    };
    tokio::time::timeout(std::time::Duration::from_secs(15), read).await.expect("the server closes the socket")
}

#[tokio::test]
async fn a_revoked_sessions_socket_is_closed_and_an_expired_token_without_refresh_too() {
    let rt = Realtime::start().await;
    // Revoked: auth's event closes the socket (3503, no reconnect).
    let claims = rt.issuer.claims(Uuid::now_v7(), &[]);
    let mut ws = connected(&rt, &rt.issuer.sign(&claims)).await;
    let other = rt.issuer.claims(Uuid::now_v7(), &[]);
    let mut bystander = connected(&rt, &rt.issuer.sign(&other)).await;
    rt.ctx
        .publish(&SessionRevoked {
            user_id: claims.sub,
            session_id: claims.sid.unwrap(),
            reason: "logout".to_owned(),
            revoked_at: chrono::Utc::now(),
        })
        .await;
    assert_eq!(close_code(&mut ws).await, Some(3503));
    // Another session is left alone: it still answers.
    bystander.send(Message::text(json!({"id": 2, "ping": {}}).to_string())).await.unwrap();
    let pong = bystander.next().await.unwrap().unwrap();
    assert!(pong.to_text().unwrap().contains("\"id\":2"), "{pong:?}");

    // Expired: a token with two seconds left and no refresh (3005, the SDK reconnects with a new one).
    let mut short = rt.issuer.claims(Uuid::now_v7(), &[]);
    short.exp = chrono::Utc::now().timestamp() + 2;
    let mut ws = connected(&rt, &rt.issuer.sign(&short)).await;
    assert_eq!(close_code(&mut ws).await, Some(3005));
}

/// Stands in for chat: grants `chat:` channels to the holders of `members`'
/// tokens (204), refuses everyone else (403), as chat's grant endpoint will.
async fn owner(members: Vec<String>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/v1/chat/realtime/channels/{channel}",
        axum::routing::get(move |headers: HeaderMap| {
            let members = members.clone();
            async move {
                let token =
                    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
                if token.is_some_and(|t| members.iter().any(|m| m == t)) {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::FORBIDDEN
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_grants_its_channels_members_see_each_other_join_and_leave_and_strangers_are_refused() {
    if !python_clients() {
        return;
    }
    // The issuer first, then the owner knowing the members' tokens, then
    // realtime knowing the owner.
    let config = Config::from_toml("[realtime]\nconnect_timeout_ms = 1000\n").unwrap();
    let ctx = TestContext::new(config).await;
    let issuer = TestIssuer::start(&ctx.config).await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (ta, tb, tc) = (issuer.token(a, &[]), issuer.token(b, &[]), issuer.token(c, &[]));
    let owner = owner(vec![ta.clone(), tb.clone()]).await;
    let ctx = ctx.with_issuer(&issuer).with_peer(kit::service::Peer::at("chat", owner));
    let service = kit::testing::server::<realtime::Realtime>(&ctx, None).await;
    let server = TestServer::spawn(service, HttpSettings::default()).await;
    let ws = format!("ws://{}/v1/ws", server.addr);
    let (a, b) = (a.to_string(), b.to_string());
    tokio::task::spawn_blocking(move || run("room.py", &[&ws, "chat:room-1", &ta, &a, &tb, &b, &tc])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_sdk_receives_in_order_and_recovers_what_it_missed() {
    // The SDK browsers use (npm `centrifuge`), in Node; CI installs it with
    // `npm ci` in tests/api/clients/js and sets the variable.
    if std::env::var("PANAL_TEST_NODE_CLIENTS").is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (centrifuge-js): set PANAL_TEST_NODE_CLIENTS=1 after `npm ci` in crates/realtime/tests/api/clients/js"
        );
        return;
    }
    let rt = Realtime::start().await;
    let me = Uuid::now_v7();
    let token = rt.issuer.token(me, &[]);
    let service = rt.service_token("realtime:publish");
    let publish = rt.server.url("/v1/realtime/publish");
    let (ws, me) = (rt.ws(), me.to_string());
    let script = format!("{}/tests/api/clients/js/sdk.mjs", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").args([&script, &ws, &publish, &service, &me, &token]).output().expect("run node")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "sdk.mjs:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user's first socket announces them online, their last one closing
/// announces them offline (users shows friends online from these).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_socket_of_a_user_announces_them_online_and_the_last_offline() {
    use contracts::realtime::PresenceChanged;
    let rt = Realtime::start().await;
    let mut presence = rt.ctx.watch::<PresenceChanged>().await;
    let ada = Uuid::now_v7();
    let token = rt.issuer.token(ada, &[]);
    let first = connected(&rt, &token).await;
    let (_, event) = presence.next().await;
    assert_eq!((event.user_id, event.online, event.replica.as_str()), (ada, true, "realtime"));
    let second = connected(&rt, &token).await;
    drop(first);
    drop(second);
    let (_, event) = presence.next().await;
    assert_eq!((event.user_id, event.online), (ada, false), "one offline, after the last socket, and no second online");
}

/// A client that stops reading fills its send queue and is disconnected as
/// slow; a subscriber of the same channel that reads keeps receiving every
/// publication, in order, and the server holds no unbounded backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_while_the_others_keep_receiving() {
    let config = Config::from_toml("[realtime]\nsend_queue = 8\n").unwrap();
    let ctx = TestContext::new(config).await;
    let issuer = TestIssuer::start(&ctx.config).await;
    let ctx = ctx.with_issuer(&issuer);
    let service = kit::testing::server::<realtime::Realtime>(&ctx, None).await;
    let rt = Realtime { server: TestServer::spawn(service, HttpSettings::default()).await, issuer, ctx };
    let user = Uuid::now_v7();
    let token = rt.issuer.token(user, &[]);
    let channel = format!("user:{user}");
    let subscribe = json!({"id": 2, "subscribe": {"channel": channel}}).to_string();
    let mut slow = connected(&rt, &token).await;
    slow.send(Message::text(subscribe.clone())).await.unwrap();
    let mut fast = connected(&rt, &token).await;
    fast.send(Message::text(subscribe)).await.unwrap();
    for ws in [&mut slow, &mut fast] {
        let reply = ws.next().await.unwrap().unwrap();
        assert!(reply.to_text().unwrap().contains("\"id\":2"), "{reply:?}");
    }
    // The fast client reads as publications arrive; the slow one never reads.
    let reader = tokio::spawn(async move {
        let mut offsets = Vec::new();
        while offsets.len() < 400 {
            let Some(Ok(Message::Text(text))) = fast.next().await else { break };
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            if let Some(offset) = v["push"]["pub"]["offset"].as_u64() {
                offsets.push(offset);
            }
        }
        offsets
    });
    // 400 publications of 60 KiB: far more than the slow client's socket
    // buffers and its queue of 8 hold.
    let http = reqwest::Client::new();
    let service = rt.service_token("realtime:publish");
    let filler = "x".repeat(60 * 1024);
    for n in 0..400 {
        let body = json!({"channel": channel, "data": {"n": n, "filler": filler}});
        let r =
            http.post(rt.server.url("/v1/realtime/publish")).bearer_auth(&service).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let offsets = tokio::time::timeout(std::time::Duration::from_secs(30), reader).await.unwrap().unwrap();
    assert_eq!(offsets, (1..=400).collect::<Vec<u64>>(), "the reading client got every one, in order");
    // The slow client's connection was cut: what it reads ends before the 400th.
    let drained = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut publications = 0;
        while let Some(Ok(message)) = slow.next().await {
            if message.is_text() {
                publications += 1;
            }
        }
        publications
    })
    .await
    .expect("the slow client's connection ends");
    assert!(drained < 400, "the slow client was cut off, after {drained} frames");
    let metrics = http.get(rt.server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("realtime_disconnects_total{") && l.ends_with("reason=\"slow\"} 1")),
        "{}",
        metrics.lines().filter(|l| l.contains("disconnects")).collect::<Vec<_>>().join("\n")
    );
}

/// A TCP proxy to `upstream` whose open connections can be cut at once
/// (new ones are still accepted): Redis going away for one replica, without
/// disturbing the other tests that share the real Redis.
struct CuttableProxy {
    addr: std::net::SocketAddr,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { addr, connections }
    }

    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// When a replica's link to Redis drops it cannot know what its clients
/// missed: it closes their sockets with 3010, and a client coming back
/// recovers from Redis's history what was published meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_redis_sends_its_clients_to_recover() {
    let Ok(redis) = std::env::var("PANAL_TEST_REDIS_URL") else {
        let _ =
            writeln!(std::io::stderr(), "SKIPPED (Redis): set PANAL_TEST_REDIS_URL=redis://127.0.0.1:6379 to run it");
        return;
    };
    let upstream = redis.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    let proxy = CuttableProxy::start(upstream).await;
    let config = Config::from_toml(&format!("redis_url = \"redis://{}\"\n", proxy.addr)).unwrap();
    let ctx = TestContext::new(config).await;
    let issuer = TestIssuer::start(&ctx.config).await;
    let ctx = ctx.with_issuer(&issuer);
    let service = kit::testing::server::<realtime::Realtime>(&ctx, None).await;
    let rt = Realtime { server: TestServer::spawn(service, HttpSettings::default()).await, issuer, ctx };
    let me = Uuid::now_v7();
    let token = rt.issuer.token(me, &[]);
    let channel = format!("user:{me}");
    let service = rt.service_token("realtime:publish");
    let http = reqwest::Client::new();
    let publish = |n: u32| {
        let request = http
            .post(rt.server.url("/v1/realtime/publish"))
            .bearer_auth(&service)
            .json(&json!({"channel": channel, "data": {"n": n}}));
        async move {
            // While Redis is being reached again, publishing is a 503: retried.
            for _ in 0..100 {
                let r = request.try_clone().unwrap().send().await.unwrap();
                if r.status() == 200 {
                    return;
                }
                assert_eq!(r.status(), 503);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("publishing never came back");
        }
    };
    let mut ws = connected(&rt, &token).await;
    let subscribed = subscribe_retrying(&mut ws, &channel, None).await;
    let epoch = subscribed["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        publish(n).await;
    }
    for n in 1..=3 {
        assert_eq!(next_offset(&mut ws).await, n);
    }
    proxy.cut();
    assert_eq!(close_code(&mut ws).await, Some(3010), "sent to reconnect: insufficient state");
    for n in 4..=5 {
        publish(n).await;
    }
    let mut back = connected(&rt, &token).await;
    let recovered = subscribe_retrying(&mut back, &channel, Some((3, epoch))).await;
    assert_eq!(recovered["recovered"], true, "{recovered}");
    let offsets: Vec<u64> =
        recovered["publications"].as_array().unwrap().iter().map(|p| p["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [4, 5], "exactly what was published while it was away");
    publish(6).await;
    assert_eq!(next_offset(&mut back).await, 6, "live again");
}

/// Subscribes `ws` to `channel` (recovering from `recover`), retrying while
/// the replica answers the temporary error 100 (its pub/sub link to Redis is
/// being opened in the background); the subscribe result.
async fn subscribe_retrying(ws: &mut Socket, channel: &str, recover: Option<(u64, String)>) -> serde_json::Value {
    let mut command = json!({"id": 2, "subscribe": {"channel": channel}});
    if let Some((offset, epoch)) = recover {
        command["subscribe"]["recover"] = json!(true);
        command["subscribe"]["offset"] = json!(offset);
        command["subscribe"]["epoch"] = json!(epoch);
    }
    for _ in 0..100 {
        ws.send(Message::text(command.to_string())).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        if reply["error"]["code"] == 100 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        assert!(reply.get("error").is_none(), "{reply}");
        return reply["subscribe"].clone();
    }
    panic!("never subscribed");
}

/// The offset of the next publication `ws` receives, within 10 seconds.
async fn next_offset(ws: &mut Socket) -> u64 {
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    v["push"]["pub"]["offset"].as_u64().unwrap()
}
