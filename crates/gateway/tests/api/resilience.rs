//! Pools, health, ejection, breaker, retries, rate limits, CORS, headers and
//! WebSocket, against test upstreams the tests can stop, restart and break.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use kit::http::Server;
use tokio_util::sync::CancellationToken;

use super::*;

/// One upstream instance: counts what it gets, answers `status`.
#[derive(Default)]
struct Hits {
    get: AtomicUsize,
    post: AtomicUsize,
    status: AtomicU16,
}

struct Instance {
    addr: SocketAddr,
    hits: Arc<Hits>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn handle(State(hits): State<Arc<Hits>>, mut req: Request) -> Response {
    if req.headers().get("upgrade").is_some_and(|v| v == "websocket") {
        // Echo raw bytes once upgraded: the gateway's tunnel is byte-transparent.
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(conn) = upgrade.await {
                let mut io = hyper_util::rt::TokioIo::new(conn);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(axum::body::Body::empty())
            .unwrap();
    }
    let status = match hits.status.load(Ordering::SeqCst) {
        0 => 200,
        s => s,
    };
    if req.method() == http::Method::POST {
        hits.post.fetch_add(1, Ordering::SeqCst);
    } else {
        hits.get.fetch_add(1, Ordering::SeqCst);
    }
    (http::StatusCode::from_u16(status).unwrap(), "instance").into_response()
}

async fn readyz(State(hits): State<Arc<Hits>>) -> http::StatusCode {
    match hits.status.load(Ordering::SeqCst) {
        0 | 200 => http::StatusCode::OK,
        _ => http::StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl Instance {
    async fn start(addr: Option<SocketAddr>, hits: Arc<Hits>) -> Self {
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap())).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/svc/readyz", any(readyz))
            .route("/svc/{*rest}", any(handle))
            .route("/legacy/{*rest}", any(handle))
            .route(
                "/slowsvc/{*rest}",
                any(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "late"
                }),
            )
            .with_state(hits.clone());
        // The instance's own /readyz (kit's) is replaced by the route above via the health path.
        let service = Server::new("instance", router, Default::default());
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task =
            tokio::spawn(async move { kit::http::serve(listener, service, &HttpSettings::default(), token).await });
        Self { addr, hits, stop, task }
    }

    async fn kill(self) -> (SocketAddr, Arc<Hits>) {
        self.stop.cancel();
        let _ = self.task.await;
        (self.addr, self.hits)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A gateway in front of `instances` on the public route `/svc` (and the
/// fallback `legacy`, when given), configured by `toml`.
async fn gateway(instances: &[&Instance], toml: &str) -> (TestServer, TestContext) {
    let urls: Vec<String> = instances.iter().map(|i| format!("\"{}\"", i.url())).collect();
    let config = Config::from_toml(&format!(
        "{toml}\n[gateway.upstreams]\nsvc = [{}]\n\n[[gateway.routes]]\nprefix = \"/svc\"\nupstream = \"svc\"\npublic = true\n\n[[gateway.routes]]\nprefix = \"/private\"\nupstream = \"svc\"\n",
        urls.join(", ")
    ))
    .unwrap();
    let ctx = TestContext::new(config).await;
    // Tokens are not used here; auth's address only has to parse.
    let upstreams = vec![Upstream { service: "auth", url: "http://127.0.0.1:9".into() }];
    let server = TestServer::spawn(build_gateway(&ctx, &upstreams).await.unwrap(), HttpSettings::default()).await;
    (server, ctx)
}

async fn get(gw: &TestServer, path: &str) -> reqwest::Response {
    reqwest::Client::new().get(gw.url(path)).send().await.unwrap()
}

// The instances' health path, set for their upstream only (`auth`'s stays /readyz).
const FAST_HEALTH: &str = "[gateway.health]\ninterval_ms = 100\n[gateway.health.paths]\nsvc = \"/svc/readyz\"\n";

#[tokio::test]
async fn a_dead_instance_loses_its_traffic_and_gets_it_back_after_a_restart() {
    let a = Instance::start(None, Arc::default()).await;
    let b = Instance::start(None, Arc::default()).await;
    let toml = format!("{FAST_HEALTH}[gateway.outlier]\nbase_ejection_ms = 200\n");
    let (gw, _ctx) = gateway(&[&a, &b], &toml).await;
    for _ in 0..10 {
        assert_eq!(get(&gw, "/svc/x").await.status(), 200);
    }
    assert_eq!((a.hits.get.load(Ordering::SeqCst), b.hits.get.load(Ordering::SeqCst)), (5, 5), "round robin");

    let (b_addr, b_hits) = b.kill().await;
    // Requests that meet the dead instance are retried on the live one (GET).
    for _ in 0..20 {
        assert_eq!(get(&gw, "/svc/x").await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(400)).await; // two failed health checks
    let before = a.hits.get.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(get(&gw, "/svc/x").await.status(), 200);
    }
    assert_eq!(a.hits.get.load(Ordering::SeqCst) - before, 10, "all traffic on the live instance");

    let b = Instance::start(Some(b_addr), b_hits).await;
    let back = b.hits.get.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await; // a passed health check
    for _ in 0..10 {
        assert_eq!(get(&gw, "/svc/x").await.status(), 200);
    }
    assert!(b.hits.get.load(Ordering::SeqCst) - back >= 4, "the restarted instance is back in rotation");
}

#[tokio::test]
async fn post_is_never_retried_and_get_is() {
    let a = Instance::start(None, Arc::default()).await;
    let b = Instance::start(None, Arc::default()).await;
    b.hits.status.store(503, Ordering::SeqCst);
    // Health checks and ejection kept out of the way: b stays in rotation.
    let toml = "[gateway.health]\ninterval_ms = 600000\n[gateway.outlier]\nconsecutive_errors = 1000\n[gateway.breaker]\nfailure_threshold = 1000\n[gateway.retry]\nmin_per_sec = 100\n";
    let (gw, _ctx) = gateway(&[&a, &b], toml).await;
    let client = reqwest::Client::new();
    let mut failed_posts = 0;
    for _ in 0..10 {
        let r = client.post(gw.url("/svc/order")).body("{}").send().await.unwrap();
        if r.status() == 503 {
            failed_posts += 1;
        }
    }
    assert_eq!(b.hits.post.load(Ordering::SeqCst), failed_posts, "each POST reached one instance once");
    assert_eq!(a.hits.post.load(Ordering::SeqCst) + b.hits.post.load(Ordering::SeqCst), 10, "no POST was sent twice");
    assert!(failed_posts > 0);
    for _ in 0..10 {
        assert_eq!(get(&gw, "/svc/x").await.status(), 200, "a GET that met the failing instance went to the other");
    }
}

#[tokio::test]
async fn a_failing_upstream_opens_the_breaker_then_a_probe_closes_it() {
    let a = Instance::start(None, Arc::default()).await;
    a.hits.status.store(500, Ordering::SeqCst);
    let toml = "[gateway.health]\ninterval_ms = 600000\n[gateway.breaker]\nfailure_threshold = 3\nopen_ms = 500\n";
    let (gw, _ctx) = gateway(&[&a], toml).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/svc/x").await.status(), 500);
    }
    let seen = a.hits.get.load(Ordering::SeqCst);
    let r = get(&gw, "/svc/x").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(problem(r).await["type"], "urn:panal:problem:upstream-circuit-open");
    assert_eq!(a.hits.get.load(Ordering::SeqCst), seen, "an open breaker sends nothing upstream");
    a.hits.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(get(&gw, "/svc/x").await.status(), 200, "the half-open probe succeeds and closes it");
    assert_eq!(get(&gw, "/svc/x").await.status(), 200);
}

#[tokio::test]
async fn rate_limits_pass_exactly_the_burst_then_one_per_interval() {
    let a = Instance::start(None, Arc::default()).await;
    let toml = "[gateway.rate_limits]\nper_ip = { rate = 4, per_secs = 1, burst = 3 }\n";
    let (gw, _ctx) = gateway(&[&a], toml).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = get(&gw, "/svc/x").await;
        if r.status() == 200 {
            assert_eq!(r.headers()["ratelimit-limit"], "3");
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let r = get(&gw, "/svc/x").await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    assert_eq!(problem(r).await["type"], "urn:panal:problem:rate-limited");
    tokio::time::sleep(Duration::from_millis(260)).await;
    assert_eq!(get(&gw, "/svc/x").await.status(), 200, "one more after 1/rate seconds");
    assert_eq!(get(&gw, "/svc/x").await.status(), 429);
}

fn redis_url() -> Option<String> {
    match std::env::var("PANAL_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (Redis): set PANAL_TEST_REDIS_URL=redis://127.0.0.1:6379 to run it"
            );
            None
        }
    }
}

#[tokio::test]
async fn two_gateways_share_one_limit_through_redis() {
    let Some(redis) = redis_url() else { return };
    let a = Instance::start(None, Arc::default()).await;
    let prefix = format!("panal-test:{}:", uuid::Uuid::new_v4().simple());
    let toml = format!(
        "redis_url = \"{redis}\"\n[gateway.rate_limits]\nkey_prefix = \"{prefix}\"\nper_ip = {{ rate = 1, per_secs = 60, burst = 6 }}\n"
    );
    let (one, _c1) = gateway(&[&a], &toml).await;
    let (two, _c2) = gateway(&[&a], &toml).await;
    let mut passed = 0;
    for i in 0..10 {
        let gw = if i % 2 == 0 { &one } else { &two };
        if get(gw, "/svc/x").await.status() == 200 {
            passed += 1;
        }
    }
    assert_eq!(passed, 6, "the burst is shared, not one per gateway");
}

#[tokio::test]
async fn with_redis_unreachable_each_gateway_limits_on_its_own() {
    let a = Instance::start(None, Arc::default()).await;
    let toml =
        "redis_url = \"redis://127.0.0.1:1\"\n[gateway.rate_limits]\nper_ip = { rate = 1, per_secs = 60, burst = 3 }\n";
    let (gw, _ctx) = gateway(&[&a], toml).await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(get(&gw, "/svc/x").await.status().as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200, 429, 429], "limits hold in memory, neither open nor closed");
    let metrics = get(&gw, "/metrics").await.text().await.unwrap();
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("gateway_rate_limit_redis_errors_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(errors >= 5.0, "{metrics}");
}

#[tokio::test]
async fn cors_preflights_are_answered_for_listed_origins_and_refused_otherwise() {
    let a = Instance::start(None, Arc::default()).await;
    let toml = "[gateway.cors]\nallowed_origins = [\"https://app.example.com\"]\n";
    let (gw, _ctx) = gateway(&[&a], toml).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str, method: &'static str| {
        client
            .request(http::Method::OPTIONS, gw.url("/svc/x"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let r = preflight("https://app.example.com", "PUT").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    assert_eq!(a.hits.get.load(Ordering::SeqCst), 0, "preflights are answered at the edge");

    let r = preflight("https://evil.example", "PUT").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(preflight("https://app.example.com", "TRACE").await.unwrap().status(), 403);

    let r = client.get(gw.url("/svc/x")).header("origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(r.headers()["vary"].to_str().unwrap().contains("origin"));
    let r = client.get(gw.url("/svc/x")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // `*` with credentials is refused at start.
    let config = Config::from_toml("[gateway.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n").unwrap();
    let ctx = TestContext::new(config).await;
    let Err(e) = build_gateway(&ctx, &[Upstream { service: "auth", url: "http://127.0.0.1:9".into() }]).await else {
        panic!("a wildcard origin with credentials must be refused");
    };
    assert!(e.to_string().contains("any origin"), "{e}");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_oversized_heads_get_431() {
    let a = Instance::start(None, Arc::default()).await;
    let (gw, _ctx) = gateway(&[&a], "[gateway]\nhsts = true\n").await;
    for path in ["/svc/x", "/nowhere", "/healthz"] {
        let r = get(&gw, path).await;
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{path}");
        if path != "/healthz" {
            assert!(r.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="), "{path}");
        }
    }
    let big = "x".repeat(20_000);
    let r = reqwest::Client::new().get(gw.url("/svc/x")).header("x-big", big).send().await.unwrap();
    assert_eq!(r.status(), 431);
}

#[tokio::test]
async fn websocket_upgrades_are_proxied_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Instance::start(None, Arc::default()).await;
    let (gw, _ctx) = gateway(&[&a], "").await;
    let (mut s, head) = raw_request(
        gw.addr,
        b"GET /svc/ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping through the gateway").await.unwrap();
    let mut echo = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo)).await.unwrap().unwrap();
    assert_eq!(&echo, b"ping through the gateway");
}

#[tokio::test]
async fn a_websocket_upgrade_on_a_protected_route_needs_a_token() {
    let a = Instance::start(None, Arc::default()).await;
    let (gw, _ctx) = gateway(&[&a], "").await;
    for target in ["/private/ws", "/private/ws?access_token=forged.token.value"] {
        let head = format!(
            "GET {target} HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let (_, answer) = raw_request(gw.addr, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{target}: {answer}");
    }
    assert_eq!(a.hits.get.load(Ordering::SeqCst), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn a_route_may_have_its_own_timeout() {
    let a = Instance::start(None, Arc::default()).await;
    let toml = "[gateway]\nupstream_timeout_ms = 5000\n[[gateway.routes]]\nprefix = \"/slowsvc\"\nupstream = \"svc\"\ntimeout_ms = 150\npublic = true\n[gateway.retry]\nmax_attempts = 1\n";
    let (gw, _ctx) = gateway(&[&a], toml).await;
    let started = std::time::Instant::now();
    let r = get(&gw, "/slowsvc/x").await;
    assert_eq!(r.status(), 504);
    assert!(problem(r).await["detail"].as_str().unwrap().contains("150 ms"));
    assert!(started.elapsed() < Duration::from_millis(550), "the route's 150 ms, not the default 5 s");
}

#[tokio::test]
async fn retries_add_at_most_a_fifth_of_the_requests() {
    let a = Instance::start(None, Arc::default()).await;
    let b = Instance::start(None, Arc::default()).await;
    b.hits.status.store(503, Ordering::SeqCst);
    let toml = "[gateway.health]\ninterval_ms = 600000\n[gateway.outlier]\nconsecutive_errors = 100000\n[gateway.breaker]\nfailure_threshold = 100000\n[gateway.retry]\nratio = 0.2\nmin_per_sec = 0\n";
    let (gw, _ctx) = gateway(&[&a, &b], toml).await;
    let mut failed = 0;
    for _ in 0..100 {
        if get(&gw, "/svc/x").await.status() != 200 {
            failed += 1;
        }
    }
    let sent = a.hits.get.load(Ordering::SeqCst) + b.hits.get.load(Ordering::SeqCst);
    let retries = sent - 100;
    assert!(retries <= 20, "{retries} retries for 100 requests");
    assert!(retries >= 15, "the budget is used: {retries}");
    // Every request that met the failing instance either failed or was
    // retried (on the other instance, where it succeeded).
    assert_eq!(b.hits.get.load(Ordering::SeqCst), failed + retries);
}
