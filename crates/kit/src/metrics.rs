//! Prometheus metrics. Each service has its own registry, so that when every
//! service runs in one process, each port's `/metrics` still describes only its
//! own service.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::db::Db;

/// The labels of the HTTP request metrics. `route` is the route template
/// (`/v1/users/{id}`), never the raw path, so the number of series stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Latency buckets from 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0])
}

/// Request metrics shared by every service.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<HttpLabels, Counter>,
    pub duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
}

/// Database pool gauges, read from the pool at scrape time.
#[derive(Clone, Default)]
struct PoolMetrics {
    open: Gauge<i64, std::sync::atomic::AtomicI64>,
    idle: Gauge<i64, std::sync::atomic::AtomicI64>,
    max: Gauge<i64, std::sync::atomic::AtomicI64>,
}

/// A service's metrics registry.
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pool: Option<(Db, PoolMetrics)>,
}

impl Metrics {
    /// A registry whose series all carry `service="<name>"`.
    pub fn new(service: &'static str) -> Self {
        let mut registry = Registry::with_labels([(Cow::Borrowed("service"), Cow::Borrowed(service))].into_iter());
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        };
        registry.register("http_requests", "HTTP requests handled, by route and status", http.requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to produce the response head, by route and status",
            http.duration.clone(),
        );
        registry.register("http_requests_in_flight", "HTTP requests being handled now", http.in_flight.clone());
        Self { registry, http, pool: None }
    }

    /// Adds the pool gauges of `db`.
    pub fn watch_pool(&mut self, db: Db) {
        let pool = PoolMetrics::default();
        self.registry.register("db_pool_connections_open", "Connections the pool holds", pool.open.clone());
        self.registry.register("db_pool_connections_idle", "Open connections not in use", pool.idle.clone());
        self.registry.register("db_pool_connections_max", "Most connections the pool may open", pool.max.clone());
        self.pool = Some((db, pool));
    }

    /// The registry, for a service's own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The registry in the text exposition format.
    pub fn render(&self) -> String {
        if let Some((db, pool)) = &self.pool {
            let stats = db.pool_stats();
            pool.open.set(i64::from(stats.open));
            pool.idle.set(stats.idle as i64);
            pool.max.set(i64::from(stats.max));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A counter a service can register, re-exported so services need not depend on
/// `prometheus-client` themselves.
pub type CounterU64 = Counter<u64, AtomicU64>;

/// A shareable handle to a service's metrics.
pub type SharedMetrics = Arc<Metrics>;
