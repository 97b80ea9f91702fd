//! Traces over OTLP, received by a collector in the test that decodes what
//! `panal up` sends (OTLP/HTTP with protobuf, the protocol's default).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use super::{PASSWORD, free_offset, temp_dir, terminate, up_with};

/// A span as received, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Received {
    process: String,
    span: Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self.span.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
        Some(match value {
            Any::StringValue(s) => s.clone(),
            Any::IntValue(i) => i.to_string(),
            Any::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
    }
}

/// An OTLP/HTTP receiver on port 0. (The tests run on a multi-threaded
/// runtime: it must answer while the test blocks waiting for `panal` to exit.)
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let collector = Self::default();
        let state = collector.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let content_type =
                        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    state.content_types.lock().unwrap().push(content_type);
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                    let mut spans = state.spans.lock().unwrap();
                    for resource in request.resource_spans {
                        let process = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref()?.value.as_ref())
                            .map(|v| match v {
                                Any::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                spans.push(Received { process: process.clone(), span });
                            }
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, addr)
    }

    fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        self.spans.lock().unwrap().iter().filter(|s| s.span.trace_id == trace_id).cloned().collect()
    }

    /// The spans of `trace_id` once `done` holds of them, within 30 s.
    async fn wait_for(&self, trace_id: &[u8], done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "the trace never completed; received: {:#?}", summary(&spans));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn summary(spans: &[Received]) -> Vec<String> {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} span={} parent={} service={:?}",
                s.process,
                s.span.name,
                hex(&s.span.span_id),
                hex(&s.span.parent_span_id),
                s.attribute("service")
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(bytes: usize) -> String {
    hex(&uuid::Uuid::new_v4().as_bytes()[..bytes])
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The one span `pick` selects, by its description.
fn one<'a>(spans: &'a [Received], what: &str, pick: impl Fn(&Received) -> bool) -> &'a Received {
    let found: Vec<_> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "expected one {what}; the trace: {:#?}", summary(spans));
    found[0]
}

fn is_request_of(service: &str) -> impl Fn(&Received) -> bool + '_ {
    move |s| s.attribute("service").as_deref() == Some(service) && s.attribute("http.route").is_some()
}

/// The SQL spans below `ancestor`, at any depth (a handler's own spans may
/// stand between).
fn sql_under<'a>(spans: &'a [Received], ancestor: &Received) -> Vec<&'a Received> {
    let descends = |mut s: &'a Received| {
        for _ in 0..spans.len() {
            if s.span.parent_span_id == ancestor.span.span_id {
                return true;
            }
            match spans.iter().find(|p| p.span.span_id == s.span.parent_span_id) {
                Some(parent) => s = parent,
                None => return false,
            }
        }
        false
    };
    spans.iter().filter(|s| s.attribute("db.system.name").is_some() && descends(s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_from_the_gateway_through_the_event_to_its_consumer() {
    let (collector, addr) = Collector::start().await;
    let dir = temp_dir();
    let offset = free_offset();
    let endpoint = format!("http://{addr}");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let (mut child, _) = up_with(&dir, offset, &env, Stdio::null());

    // The client's own trace: Panal continues it.
    let (trace, client_span) = (random_hex(16), random_hex(8));
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/auth/register", 8000 + offset))
        .header("traceparent", format!("00-{trace}-{client_span}-01"))
        .json(&json!({"email": "tracy@example.com", "password": PASSWORD, "display_name": "Tracy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let trace_id = unhex(&trace);
    let spans = collector
        .wait_for(&trace_id, |spans| {
            spans
                .iter()
                .filter(|s| s.span.name == "panal.auth.user_registered.v1 process")
                // Users' handling, the one looked at below (chat's and stats'
                // may come first).
                .filter(|s| s.attribute("consumer").as_deref() == Some("users"))
                .any(|c| !sql_under(spans, c).is_empty())
        })
        .await;

    let gateway = one(&spans, "gateway request span", is_request_of("gateway"));
    assert_eq!(gateway.span.parent_span_id, unhex(&client_span), "the gateway continues the client's span");
    assert_eq!(gateway.attribute("http.request.method").as_deref(), Some("POST"));
    assert_eq!(gateway.attribute("http.response.status_code").as_deref(), Some("202"));
    assert_eq!(gateway.process, "panal");

    let auth = one(&spans, "auth request span", is_request_of("auth"));
    assert_eq!(auth.span.parent_span_id, gateway.span.span_id, "auth's span is the gateway's child");
    assert_eq!(auth.span.name, "POST /v1/auth/register");
    assert!(!sql_under(&spans, auth).is_empty(), "auth's SQL calls are its children: {:#?}", summary(&spans));

    let publish =
        one(&spans, "publication of user_registered", |s| s.span.name == "panal.auth.user_registered.v1 publish");
    assert_eq!(publish.span.parent_span_id, auth.span.span_id, "the event is published under the request");
    let consumed = one(&spans, "users' handling of user_registered", |s| {
        s.span.name == "panal.auth.user_registered.v1 process" && s.attribute("consumer").as_deref() == Some("users")
    });
    assert_eq!(consumed.span.parent_span_id, publish.span.span_id, "the consumer continues the publication");
    assert!(!sql_under(&spans, consumed).is_empty(), "the consumer's SQL: {:#?}", summary(&spans));

    let content_types = collector.content_types.lock().unwrap().clone();
    assert!(content_types.iter().all(|c| c == "application/x-protobuf"), "{content_types:?}");
    assert!(terminate(&mut child).success());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_queued_at_shutdown_are_sent_and_a_collector_that_never_answers_holds_up_nothing() {
    // Exports only at shutdown: the batch delay is longer than the test.
    let (collector, addr) = Collector::start().await;
    let dir = temp_dir();
    let offset = free_offset();
    let endpoint = format!("http://{addr}");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "600000")];
    let (mut child, _) = up_with(&dir, offset, &env, Stdio::null());
    let trace = random_hex(16);
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/.well-known/jwks.json", 8000 + offset))
        .header("traceparent", format!("00-{trace}-{}-01", random_hex(8)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(collector.trace(&unhex(&trace)).is_empty(), "nothing is sent before the batch is due");
    assert!(terminate(&mut child).success());
    let spans = collector.trace(&unhex(&trace));
    assert!(spans.iter().any(is_request_of("gateway")), "sent at shutdown: {:#?}", summary(&spans));
    assert!(spans.iter().any(is_request_of("auth")), "sent at shutdown: {:#?}", summary(&spans));

    // A collector that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || silent.incoming().take(64).filter_map(Result::ok).collect::<Vec<_>>());
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "10")];
    let (mut child, _) = up_with(&dir, offset, &env, Stdio::null());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for _ in 0..50 {
        let r = http
            .get(format!("http://127.0.0.1:{}/.well-known/jwks.json", 8000 + offset))
            .send()
            .await
            .expect("answered while the collector hangs");
        assert_eq!(r.status(), 200);
    }
    assert!(terminate(&mut child).success(), "stops even though the collector never answers");
    drop(held);
    let _ = std::fs::remove_dir_all(dir);
}
