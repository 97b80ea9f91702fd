//! The gateway in front of the real auth service (and a recording upstream),
//! over real HTTP on port 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use gateway::Upstream;
use kit::config::{Config, HttpSettings};
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestServer, problem};
use serde_json::{Value, json};

mod front;
mod resilience;
mod wire;

const PASSWORD: &str = "correct horse battery staple";

/// The gateway as kit builds it, routing to `upstreams`.
async fn build_gateway(ctx: &kit::Context, upstreams: &[Upstream]) -> anyhow::Result<kit::http::Server> {
    let peers = upstreams.iter().map(|u| kit::service::Peer::at(u.service, u.url.clone())).collect();
    kit::service::build::<gateway::Gateway>(&ctx.with_peers(peers), None).await.map(|(server, _)| server)
}

/// What the recording upstream saw.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, HeaderMap, usize)>>,
}

async fn record(State(seen): State<Arc<Seen>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> String {
    if uri.path().ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    seen.requests.lock().unwrap().push((uri.to_string(), headers, body.len()));
    format!("{} bytes", body.len())
}

struct Platform {
    _ctx: TestContext,
    auth_db: Db,
    upstreams: Vec<Upstream>,
    gateway: TestServer,
    auth: TestServer,
    seen: Arc<Seen>,
    http: reqwest::Client,
}

impl Platform {
    async fn start(db: &TestDb) -> Self {
        Self::start_with(db, "").await
    }

    async fn start_with(db: &TestDb, toml: &str) -> Self {
        let config = Config::from_toml(&format!("[gateway]\nupstream_timeout_ms = 500\n{toml}")).unwrap();
        Self::start_config(db, config).await
    }

    async fn start_config(db: &TestDb, config: Config) -> Self {
        let ctx = TestContext::new(config.clone()).await;
        let pool = Db::connect(&db.url, &config.settings.db).await.unwrap();
        let auth_db = pool.clone();
        let auth =
            TestServer::spawn(kit::testing::server::<auth::Auth>(&ctx, Some(pool)).await, HttpSettings::default())
                .await;

        let seen = Arc::new(Seen::default());
        let recorder = Router::new().route("/{*path}", any(record)).with_state(seen.clone());
        let recorder = kit::http::Server::new("users", recorder, Default::default());
        let users = TestServer::spawn(recorder, HttpSettings::default()).await;

        let upstreams = vec![
            Upstream { service: "auth", url: format!("http://{}", auth.addr) },
            Upstream { service: "users", url: format!("http://{}", users.addr) },
        ];
        let settings = HttpSettings { body_limit: 64 * 1024, ..HttpSettings::default() };
        let gateway = TestServer::spawn(build_gateway(&ctx, &upstreams).await.unwrap(), settings).await;
        std::mem::forget(users); // lives as long as the test's runtime
        Self { gateway, auth, auth_db, upstreams, seen, http: reqwest::Client::new(), _ctx: ctx }
    }

    fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).send().await.unwrap()
    }

    async fn sign_in(&self, email: &str) -> String {
        let r =
            self.post("/v1/auth/register", json!({"email": email, "password": PASSWORD, "display_name": "Ada"})).await;
        assert_eq!(r.status(), 202);
        let r = self.post("/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs in an administrator (made one the way an operator does).
    async fn admin_token(&self, email: &str) -> String {
        let r =
            self.post("/v1/auth/register", json!({"email": email, "password": PASSWORD, "display_name": "Root"})).await;
        assert_eq!(r.status(), 202);
        auth::ops::grant_admin(&self.auth_db, email).await.unwrap();
        let r = self.post("/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// Requests for `/v1/users/me` the upstream saw after the first `since`.
    fn me_requests_since(&self, since: usize) -> usize {
        self.seen.requests.lock().unwrap()[since..].iter().filter(|(uri, _, _)| uri.ends_with("/v1/users/me")).count()
    }

    fn upstream_requests(&self) -> usize {
        self.seen.requests.lock().unwrap().len()
    }

    fn last_seen(&self) -> (String, HeaderMap, usize) {
        self.seen.requests.lock().unwrap().last().cloned().unwrap()
    }

    async fn jwks_fetches(&self) -> u64 {
        let text = reqwest::get(self.auth.url("/metrics")).await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with("http_requests_total") && l.contains("route=\"/.well-known/jwks.json\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// Sends `request`, as raw bytes, on a new connection to `addr`; returns the
/// connection and what the first read brought back (an answer's head).
async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

kit::backend_tests! {
    async fn the_first_slice_works_through_the_gateway(db) {
        let p = Platform::start(&db).await;
        let token = p.sign_in("ada@example.com").await;
        let r = p.http.get(p.url("/v1/auth/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let me: Value = r.json().await.unwrap();
        assert_eq!(me["email"], "ada@example.com");

        let r = p.http.post(p.url("/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 204);
        let r = p.http.get(p.url("/v1/auth/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 401, "auth refuses the revoked session's token at once");
    }

    async fn the_gateway_verifies_tokens_with_keys_fetched_from_auth(db) {
        let p = Platform::start(&db).await;
        assert_eq!(p.jwks_fetches().await, 0, "keys are fetched when first needed");
        let token = p.sign_in("ada@example.com").await;
        for _ in 0..5 {
            let r = p.http.get(p.url("/v1/users/me")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        assert_eq!(p.upstream_requests(), 5);
        assert_eq!(p.jwks_fetches().await, 1, "one fetch, then the cached key set");
    }

    async fn protected_routes_are_refused_at_the_edge_without_a_valid_token(db) {
        let p = Platform::start(&db).await;
        let r = p.http.get(p.url("/v1/users/me")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:unauthorized");
        let r = p.http.get(p.url("/v1/users/me")).bearer_auth("not.a.token").send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-token");
        assert_eq!(p.upstream_requests(), 0, "nothing reached the upstream");
    }

    async fn made_up_key_ids_cause_at_most_one_key_fetch_per_interval(db) {
        let p = Platform::start(&db).await;
        let token = p.sign_in("ada@example.com").await;
        let (_, rest) = token.split_once('.').unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for i in 0..30 {
            let header = b64.encode(format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"made-up-{i}"}}"#));
            let forged = format!("{header}.{rest}");
            let r = p.http.get(p.url("/v1/users/me")).bearer_auth(&forged).send().await.unwrap();
            assert_eq!(r.status(), 401);
        }
        for kid in ["../../etc/passwd", "' OR 1=1 --", "%00"] {
            let header = b64.encode(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}).to_string());
            let r = p.http.get(p.url("/v1/users/me")).bearer_auth(format!("{header}.{rest}")).send().await.unwrap();
            assert_eq!(r.status(), 401);
        }
        assert_eq!(p.jwks_fetches().await, 1, "one fetch for the first unknown kid, none after");
        assert_eq!(p.upstream_requests(), 0);
    }

    async fn forwarded_requests_carry_forwarding_headers_and_lose_hop_by_hop_and_identity_headers(db) {
        let p = Platform::start(&db).await;
        let token = p.sign_in("ada@example.com").await;
        let r = p.http.get(p.url("/v1/users/me?x=1"))
            .bearer_auth(&token)
            .header("x-request-id", "req-42")
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .header("connection", "keep-alive, x-private-hop")
            .header("x-private-hop", "secret")
            .header("x-user-id", "someone-else")
            .header("te", "trailers")
            // What the gateway sets itself: replaced, or (a chain) extended.
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-id"], "req-42");
        let (uri, headers, _) = p.last_seen();
        assert_eq!(uri, "/v1/users/me?x=1");
        for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "traceparent", "host"] {
            assert_eq!(headers.get_all(name).iter().count(), 1, "{name} must reach the upstream once: {headers:?}");
        }
        assert_eq!(headers["x-request-id"], "req-42");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(headers["x-forwarded-host"].to_str().unwrap().starts_with("127.0.0.1:"));
        assert!(headers["authorization"].to_str().unwrap().starts_with("Bearer "));
        let tp = headers["traceparent"].to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !tp.contains("00f067aa0ba902b7"), "{tp}");
        for gone in ["x-private-hop", "x-user-id", "te"] {
            assert!(!headers.contains_key(gone), "{gone} must not be forwarded");
        }
    }

    async fn bodies_stream_through_and_the_limit_holds_at_the_gateway(db) {
        let p = Platform::start(&db).await;
        let token = p.sign_in("ada@example.com").await;
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..8).map(|_| Ok(Bytes::from(vec![b'a'; 4096]))).collect();
        let r = p.http.post(p.url("/v1/users/upload")).bearer_auth(&token)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "32768 bytes");

        let r = p.http.post(p.url("/v1/users/upload")).bearer_auth(&token).body(vec![b'a'; 100_000]).send().await.unwrap();
        assert_eq!(r.status(), 413);
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..25).map(|_| Ok(Bytes::from(vec![b'a'; 4096]))).collect();
        let r = p.http.post(p.url("/v1/users/upload")).bearer_auth(&token)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send().await.unwrap();
        assert_eq!(r.status(), 413, "a streamed body over the limit is cut off");
    }

    async fn a_slow_upstream_gets_a_504_and_a_dead_one_a_502(db) {
        let mut p = Platform::start(&db).await;
        let token = p.sign_in("ada@example.com").await;
        let r = p.http.get(p.url("/v1/users/slow")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 504);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:upstream-timeout");

        p.auth.stop().await.unwrap();
        let r = p.post("/v1/auth/login", json!({"email": "ada@example.com", "password": PASSWORD})).await;
        assert_eq!(r.status(), 502);
        let body = problem(r).await;
        assert_eq!(body["detail"], "the auth service is unavailable");
    }

    async fn readiness_reports_every_upstream(db) {
        let mut p = Platform::start(&db).await;
        let r = reqwest::get(p.url("/readyz")).await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["checks"]["auth"]["status"], "up");
        assert_eq!(v["checks"]["users"]["status"], "up");
        p.auth.stop().await.unwrap();
        let r = reqwest::get(p.url("/readyz")).await.unwrap();
        assert_eq!(r.status(), 503);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["checks"]["auth"]["status"], "down");
        assert_eq!(v["checks"]["users"]["status"], "up");
    }

    async fn the_merged_api_document_and_the_docs_ui_are_served(db) {
        let p = Platform::start(&db).await;
        let doc: Value = reqwest::get(p.url("/openapi.json")).await.unwrap().json().await.unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Panal API");
        for path in ["/v1/auth/register", "/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout", "/v1/auth/me"] {
            assert!(doc["paths"][path].is_object(), "{path} is documented");
        }
        let r = reqwest::get(p.url("/docs")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
        assert!(r.text().await.unwrap().contains("swagger-ui-bundle.js"));
        let r = reqwest::get(p.url("/docs/swagger-ui-bundle.js")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap().len() > 100_000);
        assert_eq!(reqwest::get(p.url("/docs/../Cargo.toml")).await.unwrap().status(), 404);
    }

    async fn signed_out_auth_flows_pass_the_gateway_without_a_bearer_token(db) {
        let p = Platform::start(&db).await;
        let r = p.post("/v1/auth/password/forgot", json!({"email": "nobody@example.com"})).await;
        assert_eq!(r.status(), 202);
        let r = p.post("/v1/auth/login/mfa", json!({"mfa_token": "nope", "code": "123456"})).await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["type"], "urn:panal:problem:invalid-challenge", "auth answered, not the gateway");
        // OAuth clients authenticate with Basic, which the gateway passes to auth.
        let r = p.http.post(p.url("/v1/auth/token")).basic_auth("nobody", Some("secret")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
        let r = p.http.get(p.url("/v1/auth/oauth/providers")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Signed-in endpoints still need a token at the edge.
        assert_eq!(p.http.get(p.url("/v1/auth/sessions")).send().await.unwrap().status(), 401);
    }

    async fn gateway_metrics_name_the_service_route(db) {
        let p = Platform::start(&db).await;
        p.post("/v1/auth/login", json!({"email": "nobody@example.com", "password": PASSWORD})).await;
        let text = reqwest::get(p.url("/metrics")).await.unwrap().text().await.unwrap();
        assert!(text.contains(r#"http_requests_total{service="gateway",method="POST",route="/v1/auth",status="401"} 1"#), "{text}");
    }

    async fn paths_no_service_serves_are_404_problems(db) {
        let p = Platform::start(&db).await;
        let r = reqwest::get(p.url("/v1/nothing/here")).await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(problem(r).await["detail"], "no service serves /v1/nothing/here");
    }

    async fn the_web_client_is_served_for_its_pages_and_its_assets_are_cached_for_good(db) {
        let p = Platform::start(&db).await;
        for page in ["/", "/signin", "/players/abc"] {
            let r = reqwest::get(p.url(page)).await.unwrap();
            assert_eq!(r.status(), 200, "{page}");
            assert_eq!(r.headers()["cache-control"], "no-store", "index.html is never cached");
            let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
            assert!(r.text().await.unwrap().contains(r#"<main id="app""#));
        }
        // The script the page loads, cached for a year (its name changes with it).
        let html = reqwest::get(p.url("/")).await.unwrap().text().await.unwrap();
        let script = html.split("<script type=\"module\" crossorigin src=\"").nth(1).unwrap().split('"').next().unwrap();
        let r = reqwest::get(p.url(script)).await.unwrap();
        assert_eq!(r.status(), 200, "{script}");
        assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8");
        // Not the app: a stale asset name, an API path, a POST.
        assert_eq!(reqwest::get(p.url("/assets/index-gone.js")).await.unwrap().status(), 404);
        assert_eq!(reqwest::get(p.url("/v1/nothing")).await.unwrap().status(), 404);
        assert_eq!(p.http.post(p.url("/signin")).send().await.unwrap().status(), 404);
    }

    async fn a_revoked_session_is_refused_at_the_edge_within_moments(db) {
        let p = Platform::start(&db).await;
        let token = p.sign_in("ada@example.com").await;
        let me = || p.http.get(p.url("/v1/users/me")).bearer_auth(&token).send();
        assert_eq!(me().await.unwrap().status(), 200);
        let r = p.http.post(p.url("/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 204);
        let revoked = std::time::Instant::now();
        loop {
            let r = me().await.unwrap();
            if r.status() == 401 {
                assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-token");
                break;
            }
            assert!(revoked.elapsed() < Duration::from_secs(10), "the gateway never learnt of the logout");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "revocation reached the gateway in {:?}", revoked.elapsed());
        let before = p.upstream_requests();
        for _ in 0..5 {
            assert_eq!(me().await.unwrap().status(), 401);
        }
        assert_eq!(p.me_requests_since(before), 0, "refused at the edge, not upstream");
    }

    async fn admins_see_the_upstreams_and_others_do_not(db) {
        let p = Platform::start(&db).await;
        let user = p.sign_in("ada@example.com").await;
        let r = p.http.get(p.url("/admin/upstreams")).bearer_auth(&user).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(p.http.get(p.url("/admin/upstreams")).send().await.unwrap().status(), 401);
        let admin = p.admin_token("root@example.com").await;
        let v: Value = p.http.get(p.url("/admin/upstreams")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        let names: Vec<_> = v["upstreams"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["auth", "users"]);
        assert_eq!(v["upstreams"][0]["breaker"], "closed");
        assert_eq!(v["upstreams"][0]["instances"][0]["healthy"], true);
        let metrics = reqwest::get(p.url("/metrics")).await.unwrap().text().await.unwrap();
        assert!(metrics.contains("gateway_breaker_state{service=\"gateway\",upstream=\"auth\"} 0"), "{metrics}");
        assert!(metrics.contains("gateway_upstream_requests_total{service=\"gateway\",upstream=\"auth\""), "{metrics}");
    }

    async fn the_route_table_reloads_without_dropping_connections(db) {
        let legacy_a = Router::new().route("/{*p}", any(|| async { "a" }));
        let legacy_b = Router::new().route("/{*p}", any(|| async { "b" }));
        let a = TestServer::spawn(kit::http::Server::new("legacy", legacy_a, Default::default()), HttpSettings::default()).await;
        let b = TestServer::spawn(kit::http::Server::new("legacy", legacy_b, Default::default()), HttpSettings::default()).await;
        let file = std::env::temp_dir().join(format!("panal-gw-{}.toml", uuid::Uuid::new_v4().simple()));
        let write = |to: &TestServer| {
            std::fs::write(&file, format!("[gateway]\nfallback = \"legacy\"\n[gateway.upstreams]\nlegacy = [\"http://{}\"]\n", to.addr)).unwrap();
        };
        write(&a);
        let p = Platform::start_config(&db, Config::load(Some(&file)).unwrap()).await;
        let admin = p.admin_token("root@example.com").await;
        let client = reqwest::Client::new(); // one keep-alive connection across the reload
        assert_eq!(client.get(p.url("/shop/cart")).send().await.unwrap().text().await.unwrap(), "a", "unmigrated paths go to the fallback");
        write(&b);
        let r = client.post(p.url("/admin/reload")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(client.get(p.url("/shop/cart")).send().await.unwrap().text().await.unwrap(), "b");
        assert_eq!(client.get(p.url("/v1/auth/oauth/providers")).send().await.unwrap().status(), 200, "the services' routes stay");
        std::fs::write(&file, "[gateway]\nfallback = \"nowhere\"\n").unwrap();
        let r = client.post(p.url("/admin/reload")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(r.status(), 422, "a bad configuration is refused");
        assert_eq!(client.get(p.url("/shop/cart")).send().await.unwrap().text().await.unwrap(), "b", "and the routes stay as they were");
        let _ = std::fs::remove_file(&file);
    }

    async fn a_gateway_that_starts_later_still_refuses_sessions_revoked_before(db) {
        let p = Platform::start(&db).await;
        let token = p.sign_in("ada@example.com").await;
        let r = p.http.post(p.url("/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 204);
        // A second replica, on the same bus, with its own subscription.
        let config = Config::from_toml("[gateway]\ninstance_id = \"gateway-2\"\n").unwrap();
        let ctx = kit::Context { config, bus: p._ctx.bus.clone(), peers: Default::default() };
        let second = TestServer::spawn(build_gateway(&ctx, &p.upstreams).await.unwrap(), HttpSettings::default()).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = p.http.get(second.url("/v1/users/me")).bearer_auth(&token).send().await.unwrap();
            if r.status() == 401 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the new replica never learnt of the earlier logout");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
