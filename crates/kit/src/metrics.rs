//! Prometheus metrics. Each service has its own registry, so that when every
//! service runs in one process, each port's `/metrics` still describes only its
//! own service.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use thread_local::ThreadLocal;

use crate::db::Db;
use crate::hash::{FxBuildHasher, FxHasher};
use crate::local::{Padded, Tally};

/// The labels of the HTTP request metrics. `route` is the route template
/// (`/v1/users/{id}`), never the raw path, so the number of series stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Latency buckets from 0.5 ms to about 16 s.
const LATENCY_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0];

/// A latency histogram that records without a lock, or a write to memory
/// another thread writes.
///
/// prometheus-client's `Histogram` takes a mutex per observation. Every
/// request records one, so the gateway's threads met on that mutex; when the
/// thread holding it was preempted (on a busy machine it is), the other slept
/// until it ran again and its connections' answers waited: tens of
/// milliseconds at the 99th percentile. Here each thread has its own cells
/// (see [`crate::local`]), and a scrape sums them (a scrape racing an
/// observation may see its count before its sum; Prometheus tolerates that).
#[derive(Debug, Default, Clone)]
pub struct LatencyHistogram(Arc<ThreadLocal<Padded<Cells>>>);

#[derive(Debug, Default)]
struct Cells {
    /// Per bucket (the last is +Inf), not cumulative.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    /// The sum in nanoseconds.
    sum_ns: AtomicU64,
}

/// Adds `n` to a cell only this thread writes (no locked instruction).
fn bump(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|upper| secs <= *upper).unwrap_or(LATENCY_BUCKETS.len());
        let cells = self.0.get_or_default();
        bump(&cells.buckets[bucket], 1);
        bump(&cells.sum_ns, u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        bump(&cells.count, 1);
    }
}

/// A counter whose every thread counts in cells of its own, summed when
/// scraped (see [`crate::local`]): what counts every request.
#[derive(Debug, Default, Clone)]
pub struct LocalCounter(Arc<Tally>);

impl LocalCounter {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn get(&self) -> u64 {
        u64::try_from(self.0.get()).unwrap_or(0)
    }
}

impl prometheus_client::metrics::TypedMetric for LocalCounter {
    const TYPE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Counter;
}

impl prometheus_client::encoding::EncodeMetric for LocalCounter {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

/// A gauge every thread moves in cells of its own (requests in flight).
#[derive(Debug, Default, Clone)]
pub struct LocalGauge(Arc<Tally>);

impl LocalGauge {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn dec(&self) {
        self.0.dec();
    }

    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

impl prometheus_client::metrics::TypedMetric for LocalGauge {
    const TYPE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Gauge;
}

impl prometheus_client::encoding::EncodeMetric for LocalGauge {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

impl prometheus_client::metrics::TypedMetric for LatencyHistogram {
    const TYPE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); LATENCY_BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            *slot = (LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), 0);
        }
        let (mut count, mut sum_ns) = (0u64, 0u64);
        for cells in self.0.iter() {
            for (slot, cell) in buckets.iter_mut().zip(&cells.buckets) {
                slot.1 = slot.1.wrapping_add(cell.load(Ordering::Relaxed));
            }
            count = count.wrapping_add(cells.count.load(Ordering::Relaxed));
            sum_ns = sum_ns.wrapping_add(cells.sum_ns.load(Ordering::Relaxed));
        }
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum_ns as f64 / 1e9, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

/// Request metrics shared by every service.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<HttpLabels, LocalCounter>,
    pub duration: Family<HttpLabels, LatencyHistogram>,
    pub in_flight: LocalGauge,
    /// Tells this service's series apart in the per-thread cache of [`HttpMetrics::record`].
    id: u64,
}

/// One (method, route, status) series of one service, as a thread keeps it.
struct Series {
    id: u64,
    method: &'static str,
    route: Box<str>,
    status: u16,
    requests: LocalCounter,
    duration: LatencyHistogram,
}

thread_local! {
    /// Series already looked up, by a hash of their labels: a request then
    /// costs no label strings and no lock on the families.
    static SERIES: RefCell<HashMap<u64, Vec<Series>, FxBuildHasher>> = RefCell::new(HashMap::default());
}

/// The method as a label: the standard ones by name, anything else `other`,
/// so made-up methods cannot grow the number of series without bound.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.iter().position(|m| m == method).map_or("other", |i| NAMES[i])
}

impl HttpMetrics {
    /// Counts one request to `route` answered with `status` after `elapsed`.
    pub fn record(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        // Unkeyed hashing is fine here: the labels are bounded (route
        // templates, standard methods, status codes).
        let mut hasher = FxHasher::default();
        (self.id, method, route, status).hash(&mut hasher);
        let key = hasher.finish();
        let found = SERIES.with(|cache| {
            let cache = cache.borrow();
            cache.get(&key).and_then(|bucket| {
                bucket
                    .iter()
                    .find(|s| s.id == self.id && s.method == method && s.status == status && &*s.route == route)
                    .map(|s| {
                        s.requests.inc();
                        s.duration.observe(elapsed);
                    })
            })
        });
        if found.is_some() {
            return;
        }
        let labels = HttpLabels { method: method.to_owned(), route: route.to_owned(), status };
        let series = Series {
            id: self.id,
            method,
            route: route.into(),
            status,
            requests: self.requests.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
        };
        series.requests.inc();
        series.duration.observe(elapsed);
        SERIES.with(|cache| cache.borrow_mut().entry(key).or_default().push(series));
    }
}

/// A database's gauges: its pool (read from the pool at render) and its bus
/// tables (read at [`Metrics::refresh`]).
#[derive(Clone, Default)]
struct DbMetrics {
    open: Gauge<i64, std::sync::atomic::AtomicI64>,
    idle: Gauge<i64, std::sync::atomic::AtomicI64>,
    max: Gauge<i64, std::sync::atomic::AtomicI64>,
    backlog: Gauge<i64, std::sync::atomic::AtomicI64>,
    oldest_age: Gauge<f64, AtomicU64>,
    dead_letters: Gauge<i64, std::sync::atomic::AtomicI64>,
}

/// The process's resources, read from `/proc` at each scrape (Linux; zero
/// elsewhere). In `panal up` every service reports the one process.
#[derive(Default)]
struct ProcessMetrics {
    resident: Gauge<i64, std::sync::atomic::AtomicI64>,
    open_fds: Gauge<i64, std::sync::atomic::AtomicI64>,
    start_time: Gauge<f64, AtomicU64>,
    ready: Gauge<i64, std::sync::atomic::AtomicI64>,
}

/// When the process started serving (the first registry made).
static STARTED: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
});

impl ProcessMetrics {
    fn refresh(&self) {
        // `VmRSS:   12345 kB` in /proc/self/status.
        let resident_kb = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
            .unwrap_or(0);
        self.resident.set(resident_kb * 1024);
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
        self.open_fds.set(fds);
        self.start_time.set(*STARTED);
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A service's metrics registry.
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pool: Option<(Db, DbMetrics)>,
    process: ProcessMetrics,
}

impl Metrics {
    /// A registry whose series all carry `service="<name>"`.
    pub fn new(service: &'static str) -> Self {
        let mut registry = Registry::with_labels([(Cow::Borrowed("service"), Cow::Borrowed(service))].into_iter());
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::default(),
            in_flight: LocalGauge::default(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        registry.register("http_requests", "HTTP requests handled, by route and status", http.requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to produce the response head, by route and status",
            http.duration.clone(),
        );
        registry.register("http_requests_in_flight", "HTTP requests being handled now", http.in_flight.clone());
        let process = ProcessMetrics::default();
        registry.register("process_resident_memory_bytes", "Resident memory of the process", process.resident.clone());
        registry.register("process_open_fds", "File descriptors the process holds open", process.open_fds.clone());
        registry.register(
            "process_start_time_seconds",
            "When the process started serving, seconds since the epoch",
            process.start_time.clone(),
        );
        registry.register(
            "service_ready",
            "1 when the service's /readyz says ready (its database, bus or upstreams answer), else 0",
            process.ready.clone(),
        );
        Self { registry, http, pool: None, process }
    }

    /// Adds the gauges of `db`: its pool, and its bus tables (outbox
    /// backlog and age, dead letters).
    pub fn watch_pool(&mut self, db: Db) {
        let pool = DbMetrics::default();
        self.registry.register("db_pool_connections_open", "Connections the pool holds", pool.open.clone());
        self.registry.register("db_pool_connections_idle", "Open connections not in use", pool.idle.clone());
        self.registry.register("db_pool_connections_max", "Most connections the pool may open", pool.max.clone());
        self.registry.register("bus_outbox_backlog", "Events committed and not yet published", pool.backlog.clone());
        self.registry.register(
            "bus_outbox_oldest_age_seconds",
            "Age of the oldest event waiting in the outbox (0 when none waits)",
            pool.oldest_age.clone(),
        );
        self.registry.register(
            "bus_dead_letters",
            "Deliveries the consumer gave up on, waiting for replay",
            pool.dead_letters.clone(),
        );
        self.pool = Some((db, pool));
    }

    /// Reads what is sampled rather than counted (readiness, as `/readyz`
    /// found it; bus tables; the process), before [`render`](Self::render). A database that does not answer leaves
    /// the last values.
    pub async fn refresh(&self, ready: bool) {
        self.process.refresh();
        self.process.ready.set(i64::from(ready));
        if let Some((db, pool)) = &self.pool {
            match crate::bus::store::health(db).await {
                Ok(health) => {
                    pool.backlog.set(health.backlog);
                    pool.dead_letters.set(health.dead_letters);
                    let age = health.oldest.map_or(0.0, |t| (chrono::Utc::now() - t).as_seconds_f64().max(0.0));
                    pool.oldest_age.set(age);
                }
                Err(e) => tracing::debug!(error = %e, "bus gauges not refreshed"),
            }
        }
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

/// The content type of [`Metrics::render`]'s output.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`prometheus_text`]'s output.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites an OpenMetrics exposition (what the registry writes) in the
/// Prometheus text format 0.0.4, for scrapers and tools that ask for it
/// (`promtool check metrics` reads only that): a counter family `x` is named
/// `x_total` in its `HELP` and `TYPE` lines, as its samples are; `_created`
/// samples, `UNIT` lines, exemplars and the `EOF` marker go; OpenMetrics-only
/// types become `gauge` (info, stateset) or `histogram` (gaugehistogram).
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The family's HELP line waits for its TYPE line, which says whether the
    // name needs `_total`.
    let mut help: Option<(&str, &str)> = None;
    let mut counters: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (exposed, kind) = match kind {
                "counter" => {
                    counters.push(name);
                    (format!("{name}_total"), "counter")
                }
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" => (name.to_owned(), "gauge"),
                "gaugehistogram" => (name.to_owned(), "histogram"),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((help_name, text)) = help.take()
                && help_name == name
            {
                out.push_str(&format!("# HELP {exposed} {text}\n"));
            }
            out.push_str(&format!("# TYPE {exposed} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            // `# UNIT`, `# EOF`.
            continue;
        }
        let sample = line.split_once(" # ").map_or(line, |(sample, _exemplar)| sample);
        let name = sample.split(['{', ' ']).next().unwrap_or("");
        if counters.iter().any(|c| name.strip_prefix(c) == Some("_created")) {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// A counter a service can register, re-exported so services need not depend on
/// `prometheus-client` themselves.
pub type CounterU64 = Counter<u64, AtomicU64>;

/// A shareable handle to a service's metrics.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_durations_render_as_a_cumulative_histogram() {
        let metrics = Metrics::new("svc");
        for ms in [0, 2, 2, 40, 20_000] {
            metrics.http.record(&Method::GET, "/v1/things", 200, Duration::from_millis(ms));
        }
        metrics.http.record(&Method::from_bytes(b"BREW").unwrap_or(Method::GET), "/v1/things", 405, Duration::ZERO);
        let text = metrics.render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle) && l.contains("status=\"200\""))
                .map(str::to_owned)
                .unwrap_or_default()
        };
        assert!(line("http_request_duration_seconds_count{").ends_with(" 5"), "{text}");
        assert!(line("le=\"0.0025\"").ends_with(" 3"), "{text}");
        assert!(line("le=\"0.05\"").ends_with(" 4"), "{text}");
        assert!(line("le=\"+Inf\"").ends_with(" 5"), "{text}");
        let sum: f64 =
            line("http_request_duration_seconds_sum{").rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0.0);
        assert!((sum - 20.044).abs() < 1e-6, "{sum}");
        assert!(text.contains("method=\"other\""), "made-up methods share one label: {text}");
        assert!(line("http_requests_total{").contains("svc"));
    }

    #[test]
    fn the_prometheus_text_format_names_counters_as_their_samples() {
        let om = "# HELP http_requests Requests.\n# TYPE http_requests counter\n\
                  http_requests_total{route=\"/a\"} 3\nhttp_requests_created{route=\"/a\"} 1.7e9\n\
                  # HELP up Whether it is up.\n# TYPE up gauge\n# UNIT up seconds\nup 1\n\
                  # HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 2 # {trace_id=\"a\"} 0.5\n\
                  lat_sum 1\nlat_count 2\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
             http_requests_total{route=\"/a\"} 3\n\
             # HELP up Whether it is up.\n# TYPE up gauge\nup 1\n\
             # HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 1\nlat_count 2\n"
        );
    }
}
