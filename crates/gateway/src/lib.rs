//! The gateway: Panal's single way in.
//!
//! `/v1/<service>/...` is proxied to that service with the body streamed,
//! hop-by-hop headers removed, client-supplied identity headers dropped and
//! `x-forwarded-*`, `x-request-id` and `traceparent` set. Access tokens are
//! verified here, against auth's JWKS, before anything reaches a protected
//! route. The gateway also serves the merged OpenAPI document and a browsable
//! API UI at `/docs`, and reports every upstream in `/readyz`.
//!
//! - routing and forwarding: [`proxy`]
//! - the route table: [`routes`]
//! - API documentation: [`docs`]

pub mod docs;
pub mod proxy;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use kit::auth::{HttpKeySource, TokenVerifier};
use kit::config::Config;
use kit::http::Service;
use serde::Deserialize;

use crate::routes::RouteTable;

/// Gateway settings: `[gateway]` in `panal.toml`, `PANAL_GATEWAY__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Longest wait for an upstream's response head, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Longest wait to connect to an upstream, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long the merged OpenAPI document is cached, in seconds.
    pub docs_cache_secs: u64,
    /// Paths allowed bodies bigger than `http.body_limit` (uploads), in bytes.
    pub upload_limits: std::collections::BTreeMap<String, usize>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut upload_limits = std::collections::BTreeMap::new();
        // Avatars: 5 MiB of image plus the multipart envelope.
        upload_limits.insert("/v1/users/me/avatar".to_owned(), 5 * 1024 * 1024 + 64 * 1024);
        Self { upstream_timeout_ms: 10_000, connect_timeout_ms: 2_000, docs_cache_secs: 10, upload_limits }
    }
}

/// One service the gateway routes to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub service: &'static str,
    /// `http://host:port`, no trailing slash.
    pub url: String,
}

pub(crate) struct State {
    pub routes: RouteTable,
    pub client: proxy::Client,
    pub verifier: Arc<TokenVerifier>,
    pub settings: Settings,
    pub body_limit: usize,
    pub docs: docs::DocsCache,
}

pub(crate) type AppState = Arc<State>;

/// Builds the gateway for `upstreams`. Tokens are verified with the keys
/// published by the `auth` upstream.
pub fn service(config: &Config, upstreams: Vec<Upstream>) -> anyhow::Result<Service> {
    let settings: Settings = config.section("gateway")?;
    let auth = upstreams
        .iter()
        .find(|u| u.service == "auth")
        .ok_or_else(|| anyhow::anyhow!("the gateway needs an auth upstream to verify tokens"))?;
    let tokens = &config.settings.tokens;
    let verifier = Arc::new(TokenVerifier::new(
        HttpKeySource::new(format!("{}/.well-known/jwks.json", auth.url)),
        &config.issuer(),
        &tokens.audience,
        Duration::from_secs(tokens.jwks_refetch_interval_secs),
        Duration::from_secs(tokens.leeway_secs),
    ));
    let routes = RouteTable::new(&upstreams)?;
    let state = Arc::new(State {
        routes,
        client: proxy::client(Duration::from_millis(settings.connect_timeout_ms)),
        verifier,
        body_limit: config.settings.http.body_limit,
        docs: docs::DocsCache::new(Duration::from_secs(settings.docs_cache_secs)),
        settings,
    });

    let router = Router::new()
        .route("/v1/{*path}", any(proxy::forward))
        .route("/.well-known/{*path}", any(proxy::forward))
        .route("/openapi.json", get(docs::merged_openapi))
        .route("/docs", get(docs::ui))
        .route("/docs/", get(docs::ui))
        .route("/docs/{file}", get(docs::asset))
        .with_state(state.clone());

    let ready_state = state.clone();
    Ok(Service::new("gateway", router, utoipa::openapi::OpenApi::default()).without_openapi_route().with_readiness(
        Arc::new(move || {
            let state = ready_state.clone();
            Box::pin(async move { proxy::upstream_readiness(&state).await })
        }),
    ))
}
