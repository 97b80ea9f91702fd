//! API documentation: the OpenAPI documents of every upstream merged into one,
//! and Swagger UI (vendored, so `/docs` works without internet access).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use http::{StatusCode, Uri, header};
use http_body_util::BodyExt;
use kit::Problem;
use utoipa::openapi::{InfoBuilder, OpenApi};

use crate::AppState;

const BUNDLE: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
const INIT: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
"##;
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Panal API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"#;

/// Scripts come only from the gateway itself; Swagger UI needs inline styles.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// The merged document, kept for a few seconds.
pub struct DocsCache {
    ttl: Duration,
    cached: Mutex<Option<(Instant, bytes::Bytes)>>,
}

impl DocsCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, cached: Mutex::new(None) }
    }
}

pub(crate) async fn ui() -> Response {
    ([(header::CONTENT_SECURITY_POLICY, CSP), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], Html(PAGE)).into_response()
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (Body, &str) = match file.as_str() {
        "swagger-ui-bundle.js" => (Body::from(BUNDLE), "text/javascript; charset=utf-8"),
        "swagger-ui.css" => (Body::from(CSS), "text/css; charset=utf-8"),
        "init.js" => (Body::from(INIT), "text/javascript; charset=utf-8"),
        _ => return Problem::not_found(format!("no file {file:?} in /docs")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `/openapi.json`: every upstream's document merged. An upstream that cannot
/// be reached is left out (and logged) rather than failing the whole document.
pub(crate) async fn merged_openapi(State(state): State<AppState>) -> Response {
    if let Ok(guard) = state.docs.cached.lock()
        && let Some((at, doc)) = guard.as_ref()
        && at.elapsed() < state.docs.ttl
    {
        return json(doc.clone());
    }
    let mut merged = OpenApi::default();
    merged.info = InfoBuilder::new()
        .title("Panal API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Every Panal service behind the gateway. Errors are RFC 9457 `application/problem+json` documents.",
        ))
        .build();
    // The services of the map (not extra upstreams such as a legacy fallback),
    // each from its first instance.
    let table = state.table();
    let upstreams: Vec<(&str, String)> = state
        .defaults
        .iter()
        .filter_map(|u| {
            table.pools.get(u.service).and_then(|p| p.instances.first()).map(|i| (u.service, i.url.clone()))
        })
        .collect();
    for (service, base) in upstreams {
        match fetch_doc(&state, &format!("{base}/openapi.json")).await {
            Ok(doc) => merged.merge(doc),
            Err(e) => {
                tracing::warn!(upstream = service, error = %e, "left out of the merged OpenAPI document")
            }
        }
    }
    // What the gateway answers for any operation, besides the service's own.
    kit::openapi::add_answers(
        &mut merged,
        &[
            (StatusCode::TOO_MANY_REQUESTS, "Over a rate limit (see Retry-After and RateLimit-*)"),
            (StatusCode::BAD_GATEWAY, "The service behind the gateway failed to answer"),
            (StatusCode::SERVICE_UNAVAILABLE, "The service behind the gateway is down or shedding load"),
            (StatusCode::GATEWAY_TIMEOUT, "The service behind the gateway took too long"),
        ],
    );
    let Ok(body) = serde_json::to_vec(&merged) else {
        return Problem::new(StatusCode::INTERNAL_SERVER_ERROR).into_response();
    };
    let body = bytes::Bytes::from(body);
    if let Ok(mut guard) = state.docs.cached.lock() {
        *guard = Some((Instant::now(), body.clone()));
    }
    json(body)
}

fn json(body: bytes::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn fetch_doc(state: &AppState, url: &str) -> anyhow::Result<OpenApi> {
    let uri: Uri = url.parse()?;
    let req = http::Request::get(uri).body(Body::empty())?;
    let resp = tokio::time::timeout(Duration::from_secs(2), state.client.request(req)).await??;
    if !resp.status().is_success() {
        anyhow::bail!("{url} answered {}", resp.status());
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}
