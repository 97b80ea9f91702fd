//! The gateway: Panal's single way in.
//!
//! Requests are routed by path prefix to a pool of upstream instances
//! (`/v1/<service>` by default, versioned routes and a legacy fallback from
//! configuration), balanced round robin or least in flight, kept away from
//! instances that fail health checks or return errors, stopped at once by a
//! circuit breaker when an upstream is down, and retried (idempotent methods
//! only) within a retry budget. On the way in: CORS, security headers, rate
//! limits (memory or Redis), access tokens verified with a cache and revoked
//! sessions refused. Bodies stream both ways; WebSocket upgrades are proxied.
//! The gateway also serves the merged OpenAPI document, `/docs`, `/readyz` per
//! upstream and `/admin/upstreams`.
//!
//! - the route table: [`routes`]; pools, health and ejection: [`balance`]
//! - forwarding: [`proxy`], [`upstream`], and [`front`] (the byte-level
//!   path most requests take); rate limits: [`limits`]; CORS and headers: [`edge`]
//! - revoked sessions: [`denylist`]; API documentation: [`docs`]

pub mod admin;
pub mod balance;
pub mod denylist;
pub mod docs;
pub mod edge;
pub mod fields;
pub mod front;
pub mod limits;
pub mod proxy;
pub mod routes;
pub mod upstream;
pub mod web;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use kit::auth::TokenVerifier;
use kit::config::Config;
use kit::http::{Server, Worker};
use kit::resilience::{BreakerSettings, RetrySettings};
use kit::service::Setup;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::balance::{HealthSettings, OutlierSettings, Strategy};
use crate::edge::CorsSettings;
use crate::limits::{RateLimitSettings, RateLimits};
use crate::routes::{RouteSettings, RouteTable};

/// Gateway settings: `[gateway]` in `panal.toml`, `PANAL_GATEWAY__*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Longest wait for an upstream's response head, in milliseconds (routes
    /// may set their own).
    pub upstream_timeout_ms: u64,
    /// Longest wait to connect to an upstream, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long an idle connection to an upstream is kept, in milliseconds.
    /// Keep it below the upstreams' own keep-alive limit (Panal services:
    /// `http.header_read_timeout_ms`, 10 s), so the gateway never sends a
    /// request on a connection the upstream is closing.
    pub upstream_idle_ms: u64,
    /// How long the merged OpenAPI document is cached, in seconds.
    pub docs_cache_secs: u64,
    /// Paths allowed bodies bigger than `http.body_limit` (uploads), in
    /// bytes, besides those the services declare (users' avatars).
    pub upload_limits: std::collections::BTreeMap<String, usize>,
    /// Instances per upstream: a service of the map (replacing its one
    /// address) or a new name for routes and the fallback.
    pub upstreams: std::collections::BTreeMap<String, Vec<String>>,
    /// Routes besides `/v1/<service>`, longest prefix first.
    pub routes: Vec<RouteSettings>,
    /// The upstream for paths no route matches (a legacy application being
    /// replaced service by service).
    pub fallback: Option<String>,
    pub balance: Strategy,
    pub health: HealthSettings,
    pub outlier: OutlierSettings,
    pub breaker: BreakerSettings,
    pub retry: RetrySettings,
    pub rate_limits: RateLimitSettings,
    pub cors: CorsSettings,
    /// Send `Strict-Transport-Security` (on by itself when the gateway
    /// serves TLS; set it when a TLS terminator stands in front).
    pub hsts: bool,
    /// Name of this replica's revocation subscription on the bus; give each
    /// replica its own.
    pub instance_id: String,
    /// Serve plaintext connections with the byte-level front ([`front`]);
    /// `false` leaves every request to hyper (for comparison, or should
    /// the front misbehave).
    pub byte_front: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            upstream_timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
            upstream_idle_ms: 8_000,
            docs_cache_secs: 10,
            upload_limits: Default::default(),
            upstreams: Default::default(),
            routes: Vec::new(),
            fallback: None,
            balance: Strategy::default(),
            health: HealthSettings::default(),
            outlier: OutlierSettings::default(),
            breaker: BreakerSettings::default(),
            retry: RetrySettings::default(),
            rate_limits: RateLimitSettings::default(),
            cors: CorsSettings::default(),
            hsts: false,
            instance_id: "gateway".to_owned(),
            byte_front: true,
        }
    }
}

/// One service the gateway routes to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub service: &'static str,
    /// `http://host:port`, no trailing slash.
    pub url: String,
}

/// What the gateway's handlers and its front share.
pub struct State {
    /// Swapped whole on reload; requests in flight keep the table they began with.
    pub routes: RwLock<Arc<RouteTable>>,
    /// Moves on with every swap of `routes`, for whoever keeps a table of
    /// its own (the byte-level front, per connection) to see it changed.
    pub routes_version: std::sync::atomic::AtomicU64,
    pub defaults: Vec<Upstream>,
    pub config: RwLock<Config>,
    /// The health checks' client.
    pub client: proxy::Client,
    pub upstreams: upstream::Upstreams,
    pub verifier: Arc<TokenVerifier>,
    /// Where the revocations come from.
    pub bus: kit::bus::Bus,
    pub settings: Settings,
    pub docs: docs::DocsCache,
    pub limits: RateLimits,
    pub denied: denylist::DenyList,
    pub edge: edge::Edge,
    pub metrics: proxy::GatewayMetrics,
    /// The route label of requests no route matches.
    pub unmatched: Arc<str>,
    /// What `x-forwarded-proto` says: whether this process serves TLS.
    pub forwarded_proto: &'static [u8],
}

impl State {
    pub fn table(&self) -> Arc<RouteTable> {
        self.routes.read().map(|t| t.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Reads the configuration again and swaps the route table. Pools whose
    /// instances did not change keep their state; connections stay open.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = self.config.read().map_err(|_| anyhow::anyhow!("configuration lock poisoned"))?.reload()?;
        let settings: Settings = fresh.section("gateway")?;
        let table = RouteTable::build(&self.defaults, &settings, Some(&self.table()))?;
        *self.routes.write().map_err(|_| anyhow::anyhow!("route table lock poisoned"))? = Arc::new(table);
        self.routes_version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut c) = self.config.write() {
            *c = fresh;
        }
        tracing::info!("gateway configuration reloaded");
        Ok(())
    }
}

pub(crate) type AppState = Arc<State>;

/// The gateway. It routes to the other services the process knows
/// ([`kit::Context::peers`]): `/v1/<service>` to each by default. Tokens are
/// verified with the keys auth publishes; revoked sessions arrive as auth's
/// `session_revoked` events on the bus.
pub struct Gateway;

impl kit::Service for Gateway {
    const NAME: &'static str = "gateway";
    // Revocations, into the deny-list (see [`denylist`]).
    const FOLLOWS: &'static [&'static str] = &[<contracts::auth::SessionRevoked as contracts::Event>::TYPE];
    type Settings = Settings;
    type State = State;

    async fn state(setup: Setup<Settings>) -> anyhow::Result<State> {
        let config = &setup.ctx.config;
        let mut settings = setup.settings;
        let upstreams: Vec<Upstream> = setup
            .ctx
            .peers
            .iter()
            .filter(|p| p.name != Self::NAME)
            .map(|p| Upstream { service: p.name, url: p.url.clone() })
            .collect();
        // What the services take, the gateway lets through.
        for peer in setup.ctx.peers.iter() {
            for (path, bytes) in peer.body_limits {
                settings.upload_limits.entry((*path).to_owned()).or_insert(*bytes);
            }
        }
        let tokens = &config.settings.tokens;
        let routes = RouteTable::build(&upstreams, &settings, None)?;
        let limits = RateLimits::new(
            settings.rate_limits.clone(),
            config.settings.redis_url.as_ref().map(|s| s.expose().as_str()),
        )?;
        let edge = edge::Edge::new(&settings.cors, settings.hsts || config.settings.http.tls())?;
        // A revoked session's tokens stay valid (by signature) until they expire:
        // the deny-list keeps them that long, plus leeway.
        let deny_for = Duration::from_secs(3600 + tokens.leeway_secs);
        Ok(State {
            routes: RwLock::new(Arc::new(routes)),
            routes_version: std::sync::atomic::AtomicU64::new(0),
            defaults: upstreams,
            config: RwLock::new(config.clone()),
            client: proxy::client(Duration::from_millis(settings.connect_timeout_ms)),
            upstreams: upstream::Upstreams {
                connect_timeout: Duration::from_millis(settings.connect_timeout_ms),
                idle_timeout: Duration::from_millis(settings.upstream_idle_ms),
            },
            verifier: setup.verifier.clone(),
            bus: setup.ctx.bus.clone(),
            docs: docs::DocsCache::new(Duration::from_secs(settings.docs_cache_secs)),
            limits,
            denied: denylist::DenyList::new(deny_for),
            edge,
            metrics: proxy::GatewayMetrics::default(),
            unmatched: Arc::from("unmatched"),
            forwarded_proto: if config.settings.http.tls() { b"https" } else { b"http" },
            settings,
        })
    }

    /// The gateway's own routes; every other request goes to the proxy
    /// (`proxy::Proxy`, ahead of this router).
    fn routes(state: &Arc<State>) -> OpenApiRouter {
        let router = Router::new()
            .route("/openapi.json", get(docs::merged_openapi))
            .route("/docs", get(docs::ui))
            .route("/docs/", get(docs::ui))
            .route("/docs/{file}", get(docs::asset))
            .route("/admin/upstreams", get(admin::upstreams))
            .route("/admin/reload", post(admin::reload))
            .layer(axum::middleware::from_fn_with_state(state.clone(), edge::layer))
            .with_state(state.clone());
        OpenApiRouter::from(router)
    }

    fn workers(state: &Arc<State>) -> Vec<Worker> {
        vec![
            proxy::health_worker(state.clone()),
            admin::reload_on_sighup(state.clone()),
            denylist::worker(state.clone(), state.bus.clone()),
        ]
    }

    fn finish(server: Server, state: &Arc<State>) -> anyhow::Result<Server> {
        let ready_state = state.clone();
        let mut server = server
            .without_openapi_route()
            .with_front(Arc::new(proxy::Proxy(state.clone())))
            .with_readiness(Arc::new(move || {
                let state = ready_state.clone();
                Box::pin(async move { proxy::upstream_readiness(&state).await })
            }));
        if state.settings.byte_front {
            server = server.with_connection_front(Arc::new(front::ByteFront::new(state.clone())));
        }
        // Uploads may be larger than `http.body_limit` on their own paths.
        for (path, bytes) in &state.settings.upload_limits {
            server = server.with_body_limit(path, *bytes);
        }
        state.metrics.register(server.metrics_mut().registry_mut(), state);
        Ok(server)
    }
}
