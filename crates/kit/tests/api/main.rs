//! The shared HTTP plumbing, exercised over real HTTP on port 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bus;
mod credentials;
mod tokens;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use kit::config::{Config, HttpSettings};
use kit::db::Db;
use kit::http::{RequestId, Server};
use kit::testing::{TestServer, problem};
use kit::trace::TraceContext;
use kit::{FieldErrors, Json, Problem};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Greeting {
    name: String,
    times: u8,
}

async fn echo_ids(
    axum::Extension(id): axum::Extension<RequestId>,
    axum::Extension(trace): axum::Extension<TraceContext>,
) -> String {
    format!("{} {}", id.0, trace.header_value())
}

async fn greet(Json(g): Json<Greeting>) -> Result<String, Problem> {
    let mut errors = FieldErrors::new();
    if g.name.is_empty() {
        errors.add("name", "is required");
    }
    if g.times == 0 {
        errors.add("times", "must be at least 1");
    }
    errors.finish()?;
    Ok(g.name.repeat(usize::from(g.times)))
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(600)).await;
    "done"
}

async fn boom() -> &'static str {
    panic!("secret internal detail")
}

fn service() -> Server {
    let router = Router::new()
        .route("/ids", get(echo_ids))
        .route("/greet", post(greet))
        .route("/slow", get(slow))
        .route("/boom", get(boom))
        .route("/items/{id}", get(|| async { "item" }))
        .route("/thread", get(|| async { std::thread::current().name().unwrap_or("?").to_owned() }));
    Server::new("test", router, utoipa::openapi::OpenApi::default())
}

fn settings() -> HttpSettings {
    HttpSettings {
        body_limit: 1024,
        request_timeout_ms: 2_000,
        shutdown_grace_ms: 5_000,
        access_log: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_generated_otherwise() {
    let app = TestServer::spawn(service(), settings()).await;
    let c = reqwest::Client::new();
    let r = c.get(app.url("/ids")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    assert!(r.text().await.unwrap().starts_with("abc-123 "));

    let r = c.get(app.url("/ids")).header("x-request-id", "x".repeat(500)).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a fresh UUID replaces an oversized id");
    assert!(r.text().await.unwrap().starts_with(&generated));
}

#[tokio::test]
async fn traceparent_keeps_the_callers_trace_with_a_new_span() {
    let app = TestServer::spawn(service(), settings()).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = reqwest::Client::new()
        .get(app.url("/ids"))
        .header("traceparent", parent)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ours = body.split(' ').nth(1).unwrap();
    assert!(ours.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{ours}");
    assert!(!ours.contains("00f067aa0ba902b7"));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problem_documents() {
    let app = TestServer::spawn(service(), settings()).await;
    let c = reqwest::Client::new();
    let r = c.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let p = problem(r).await;
    assert_eq!(p["status"], 404);
    assert!(p["request_id"].is_string());

    let r = c.delete(app.url("/greet")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(problem(r).await["status"], 405);
}

#[tokio::test]
async fn bad_json_bodies_get_a_clear_problem_for_each_kind_of_mistake() {
    let app = TestServer::spawn(service(), settings()).await;
    let c = reqwest::Client::new();
    let url = app.url("/greet");

    let r = c.post(&url).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);
    assert!(problem(r).await["detail"].as_str().unwrap().contains("application/json"));

    let r = c.post(&url).header("content-type", "application/json").body("{\"name\":").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["type"], "urn:panal:problem:malformed-json");

    let r = c.post(&url).json(&serde_json::json!({"name": "a", "times": 1, "admin": true})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(problem(r).await["detail"].as_str().unwrap().contains("unknown field `admin`"));

    let r = c.post(&url).json(&serde_json::json!({"name": "", "times": 0})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let p = problem(r).await;
    let fields: Vec<_> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "times"], "every bad field is listed");

    let r = c.post(&url).json(&serde_json::json!({"name": "ab", "times": 2})).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "abab");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413_whether_announced_or_streamed() {
    let app = TestServer::spawn(service(), settings()).await;
    let c = reqwest::Client::new();
    let big = format!("{{\"name\":\"{}\",\"times\":1}}", "x".repeat(2048));
    let r =
        c.post(app.url("/greet")).header("content-type", "application/json").body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(problem(r).await["detail"].as_str().unwrap().contains("1024 bytes"));

    // No Content-Length: the limit applies as the body streams in.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(big))]);
    let r = c
        .post(app.url("/greet"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(problem(r).await["status"], 413);
}

#[tokio::test]
async fn a_handler_that_takes_too_long_gets_a_503_problem() {
    let app = TestServer::spawn(service(), HttpSettings { request_timeout_ms: 100, ..settings() }).await;
    let r = reqwest::get(app.url("/slow")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(problem(r).await["type"], "urn:panal:problem:timeout");
}

#[tokio::test]
async fn a_panic_becomes_a_500_that_reveals_nothing_internal() {
    let app = TestServer::spawn(service(), settings()).await;
    let r = reqwest::get(app.url("/boom")).await.unwrap();
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("request_id"));
    // The server is still serving.
    assert_eq!(reqwest::get(app.url("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = TestServer::spawn(service(), settings()).await;
    for id in ["1", "2", "3"] {
        reqwest::get(app.url(&format!("/items/{id}"))).await.unwrap();
    }
    reqwest::get(app.url("/nope")).await.unwrap();
    // A scraper that asks for OpenMetrics gets it; anyone else the
    // Prometheus text format, counters named as their samples.
    let om = reqwest::Client::new()
        .get(app.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let om = om.text().await.unwrap();
    assert!(om.contains("# TYPE http_requests counter") && om.ends_with("# EOF\n"), "{om}");
    let r = reqwest::get(app.url("/metrics")).await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE http_requests_total counter") && !text.contains("# EOF"), "{text}");
    assert!(
        text.contains(r#"http_requests_total{service="test",method="GET",route="/items/{id}",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404"} 1"#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("http_requests_in_flight"));
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight_and_refuses_new_ones() {
    let mut app = TestServer::spawn(service(), settings()).await;
    let url = app.url("/slow");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = reqwest::Client::new().get(app.url("/healthz")).timeout(Duration::from_secs(1)).send().await;
    assert!(refused.is_err(), "new connections are refused once shutdown begins");
    assert_eq!(in_flight.await.unwrap().unwrap(), 200, "the in-flight request completes");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_is_openapi_31_with_the_shared_schemas() {
    let app = TestServer::spawn(service(), settings()).await;
    let doc: serde_json::Value = reqwest::get(app.url("/openapi.json")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Panal test API");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

kit::backend_tests! {
    async fn readiness_reports_the_database(db) {
        let config = Config::from_toml("").unwrap();
        let pool = Db::connect(&db.url, &config.settings.db).await.unwrap();
        let app = TestServer::spawn(service().with_db(pool.clone()), settings()).await;
        let r = reqwest::get(app.url("/readyz")).await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["checks"]["database"]["status"], "up");
        let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
        let max = pool.pool_stats().max;
        assert!(max >= 10);
        assert!(metrics.contains(&format!("db_pool_connections_max{{service=\"test\"}} {max}")), "{metrics}");

        pool.close().await;
        let r = reqwest::get(app.url("/readyz")).await.unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["checks"]["database"]["status"], "down");
    }
}

/// Writes `bytes` on a raw connection and returns what the server answers
/// (the status line's code) or `None` when it closes without answering.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8], wait: std::time::Duration) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => None,
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).split(' ').nth(1).and_then(|s| s.parse().ok()),
        Err(_) => panic!("the server neither answered nor closed within {wait:?}"),
    }
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let app = TestServer::spawn(service(), HttpSettings { max_header_bytes: 8192, ..settings() }).await;
    let big = format!("GET /slow HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(raw_exchange(app.addr, big.as_bytes(), std::time::Duration::from_secs(5)).await, Some(431));
    let fine = "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    assert_eq!(raw_exchange(app.addr, fine.as_bytes(), std::time::Duration::from_secs(5)).await, Some(200));
}

/// The whole answer to `bytes` on a raw connection, as text.
async fn raw_answer(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_missing_or_repeated_host_is_400_and_too_many_fields_431_with_a_problem() {
    let app = TestServer::spawn(service(), settings()).await;
    let no_host = raw_answer(app.addr, b"GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    assert!(no_host.contains("urn:panal:problem:bad-host"), "{no_host}");
    let two = raw_answer(app.addr, b"GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400") && two.contains("has 2"), "{two}");
    // HTTP/1.0 had no Host field: a 1.0 request without one is fine.
    let old = raw_answer(app.addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"), "{old}");

    let fields: String = (0..70).map(|i| format!("x-field-{i}: v\r\n")).collect();
    let many = raw_answer(app.addr, format!("GET /healthz HTTP/1.1\r\nhost: a\r\n{fields}\r\n").as_bytes()).await;
    assert!(many.starts_with("HTTP/1.1 431"), "{many}");
    assert!(many.contains("urn:panal:problem:too-many-fields") && many.contains("at most 64"), "{many}");
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_request_head_is_cut_off() {
    let app = TestServer::spawn(service(), HttpSettings { header_read_timeout_ms: 300, ..settings() }).await;
    // Half a request line, then nothing (slowloris): the server answers 408
    // or closes once the head timeout passes, instead of waiting forever.
    let started = std::time::Instant::now();
    let answer = raw_exchange(app.addr, b"GET /healthz HTTP/1.1\r\nhost:", std::time::Duration::from_secs(5)).await;
    assert!(matches!(answer, None | Some(408)), "{answer:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[tokio::test]
async fn https_is_served_from_certificate_files() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let tls = HttpSettings {
        tls_cert: Some(data.join("localhost.crt")),
        tls_key: Some(data.join("localhost.key")),
        ..settings()
    };
    let app = TestServer::spawn(service(), tls).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(data.join("ca.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let r = client.get(format!("https://localhost:{}/healthz", app.addr.port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", app.addr.port())).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[tokio::test]
async fn thread_per_core_serving_answers_and_stops_cleanly() {
    let mut app = TestServer::spawn(service(), HttpSettings { threads: 2, ..settings() }).await;
    let http = reqwest::Client::new();
    let answers = futures_util::future::join_all((0..50).map(|_| http.get(app.url("/healthz")).send())).await;
    assert!(answers.into_iter().all(|r| r.unwrap().status() == 200));
    let r = http.post(app.url("/greet")).json(&serde_json::json!({"name": "Ada"})).send().await.unwrap();
    assert!(r.status().is_success() || r.status().is_client_error(), "{}", r.status());
    app.stop().await.unwrap();
    assert!(http.get(app.url("/healthz")).send().await.is_err(), "stopped: nothing listens");
}

#[tokio::test]
async fn thread_per_core_deals_connections_to_the_threads_in_turn() {
    let mut app = TestServer::spawn(service(), HttpSettings { threads: 2, ..settings() }).await;
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20 {
        // A client of its own: a connection of its own.
        let thread = reqwest::get(app.url("/thread")).await.unwrap().text().await.unwrap();
        *served.entry(thread).or_default() += 1;
    }
    assert_eq!(served.values().copied().collect::<Vec<_>>(), [10, 10], "{served:?}");
    assert!(served.keys().all(|t| t.starts_with("test-http-")), "{served:?}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_whose_client_left_is_no_longer_in_flight() {
    let app = TestServer::spawn(service(), settings()).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    assert!(impatient.get(app.url("/slow")).send().await.is_err(), "the client gives up first");
    // The handler's future is dropped with the connection, not finished.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    let in_flight = metrics
        .lines()
        .find(|l| l.starts_with("http_requests_in_flight"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<i64>().ok());
    assert_eq!(in_flight, Some(1), "only the scrape itself is in flight: {metrics}");
}
