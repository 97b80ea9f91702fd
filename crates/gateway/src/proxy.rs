//! Forwarding requests to upstreams.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kit::Problem;
use kit::auth::bearer_token;
use kit::http::{CheckResult, Readiness, RequestId, RouteLabel};
use kit::trace::TraceContext;

use crate::AppState;
use crate::routes::Target;

/// The pooled HTTP/1.1 client used for every upstream.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

pub fn client(connect_timeout: Duration) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1);
/// they must not be forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Identity headers only the platform may set. A client that sends them is
/// trying to pass for someone else; they are dropped.
const IDENTITY_HEADERS: &[&str] = &["x-user-id", "x-user-roles", "x-session-id", "x-authenticated-user"];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Proxies one request to the service its path belongs to.
pub(crate) async fn forward(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(target) = state.routes.resolve(&path) else {
        return Problem::not_found(format!("no service serves {path}")).into_response();
    };
    let label = RouteLabel(target.label.clone());
    let mut response = match forward_to(&state, &target, req).await {
        Ok(r) => r,
        Err(problem) => problem.into_response(),
    };
    response.extensions_mut().insert(label);
    response
}

async fn forward_to(state: &AppState, target: &Target, req: Request) -> Result<Response, Problem> {
    if !target.public {
        let token = bearer_token(req.headers())?
            .ok_or_else(|| Problem::unauthorized("this endpoint needs an access token (`Authorization: Bearer …`)"))?;
        let claims = state.verifier.verify(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.sub));
    }

    let (mut parts, body) = req.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let original_host = parts.headers.get(header::HOST).cloned();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("{}{}", target.base, path_and_query)
        .parse()
        .map_err(|_| Problem::bad_request("the request target is not a valid URI"))?;

    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    for name in IDENTITY_HEADERS {
        headers.remove(*name);
    }
    headers.remove(header::HOST);
    if let Some(ip) = peer {
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
            headers.insert("x-forwarded-for", v);
        }
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = original_host {
        headers.insert("x-forwarded-host", host);
    }
    if let Some(id) = parts.extensions.get::<RequestId>()
        && let Ok(v) = HeaderValue::from_str(&id.0)
    {
        headers.insert("x-request-id", v);
    }
    if let Some(trace) = parts.extensions.get::<TraceContext>()
        && let Ok(v) = HeaderValue::from_str(&trace.header_value())
    {
        headers.insert("traceparent", v);
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;

    // Bodies stream through; the limit is enforced as bytes pass.
    let limit = state.settings.upload_limits.get(parts.uri.path()).copied().unwrap_or(state.body_limit);
    let body = Body::new(Limited::new(body, limit));
    let upstream_req = Request::from_parts(parts, body);

    let timeout = Duration::from_millis(state.settings.upstream_timeout_ms);
    let result = tokio::time::timeout(timeout, state.client.request(upstream_req)).await;
    let response = match result {
        Err(_) => {
            tracing::warn!(upstream = target.service, "upstream timed out");
            return Err(Problem::new(StatusCode::GATEWAY_TIMEOUT)
                .with_type("upstream-timeout", "Upstream timed out")
                .with_detail(format!(
                    "the {} service did not answer within {} ms",
                    target.service,
                    timeout.as_millis()
                )));
        }
        Ok(Err(e)) => {
            if is_body_limit(&e) {
                return Err(Problem::payload_too_large(limit));
            }
            tracing::warn!(upstream = target.service, error = %kit::problem::ErrorChain(&e), "upstream unavailable");
            return Err(Problem::new(StatusCode::BAD_GATEWAY)
                .with_type("upstream-unavailable", "Upstream unavailable")
                .with_detail(format!("the {} service is unavailable", target.service)));
        }
        Ok(Ok(r)) => r,
    };

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn is_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `/readyz`: every upstream's own `/readyz`, checked concurrently.
pub(crate) async fn upstream_readiness(state: &AppState) -> Readiness {
    let checks = state.routes.upstreams().map(|(service, base)| {
        let client = state.client.clone();
        let url = format!("{base}/readyz");
        async move {
            let result = match url.parse::<Uri>() {
                Ok(uri) => {
                    let req = Request::get(uri).body(Body::empty());
                    match req {
                        Ok(req) => match tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
                            Ok(Ok(r)) if r.status().is_success() => {
                                let _ = r.into_body().collect().await;
                                CheckResult::up()
                            }
                            Ok(Ok(r)) => CheckResult::down(format!("{url} answered {}", r.status())),
                            Ok(Err(e)) => CheckResult::down(format!("{url}: {e}")),
                            Err(_) => CheckResult::down(format!("{url}: no answer within 2 s")),
                        },
                        Err(e) => CheckResult::down(e.to_string()),
                    }
                }
                Err(e) => CheckResult::down(e.to_string()),
            };
            (service.to_owned(), result)
        }
    });
    let results: BTreeMap<String, CheckResult> = futures_util::future::join_all(checks).await.into_iter().collect();
    Readiness::from_checks(results)
}
