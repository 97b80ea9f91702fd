//! Upstream pools: the instances of one upstream, how a request picks one
//! (round robin or least in flight), and how an instance leaves and rejoins
//! the rotation — active health checks on `/readyz`, passive outlier ejection
//! after consecutive errors — with a circuit breaker and a retry budget per
//! upstream (from `kit::resilience`).

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kit::local::{Padded, Tally};
use kit::resilience::{BreakerSettings, CircuitBreaker, RetryBudget, RetrySettings};
use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;

/// How a pool picks an instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    LeastInFlight,
}

/// Active health checks: `GET <instance><path>` every `interval_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HealthSettings {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub path: String,
    /// Per-upstream paths, for upstreams without `/readyz` (`legacy = "/status"`).
    pub paths: std::collections::BTreeMap<String, String>,
    /// Failed checks in a row that take an instance out.
    pub unhealthy_after: u32,
    /// Passed checks in a row that bring it back.
    pub healthy_after: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            timeout_ms: 2_000,
            path: "/readyz".into(),
            paths: Default::default(),
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

/// Passive outlier ejection: `consecutive_errors` failures in a row (connect
/// errors, timeouts, 5xx) eject an instance for `base_ejection_ms` × the
/// number of times it was ejected (capped at `max_ejection_ms`), never more
/// than `max_ejection_percent` of a pool's instances at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OutlierSettings {
    pub consecutive_errors: u32,
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
    pub max_ejection_percent: u32,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self { consecutive_errors: 5, base_ejection_ms: 10_000, max_ejection_ms: 300_000, max_ejection_percent: 50 }
    }
}

#[derive(Debug, Default)]
struct Passive {
    consecutive: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
}

/// Gives every instance an id of its own for the per-thread connection pools.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct Instance {
    /// `http://host:port`, no trailing slash.
    pub url: String,
    /// Its connections in the per-thread pools (see [`crate::upstream`]).
    pub id: u64,
    /// `host:port`, to connect to.
    pub address: String,
    /// The `Host` header of requests to it.
    pub host: http::HeaderValue,
    /// Its `gateway_upstream_requests` counters, by outcome (set on first use).
    pub counters: std::sync::OnceLock<[kit::metrics::LocalCounter; 8]>,
    /// Counted per thread (see [`kit::local`]): every request moves these.
    in_flight: Tally,
    healthy: AtomicBool,
    /// (failed checks in a row, passed checks in a row)
    checks: Mutex<(u32, u32)>,
    passive: Mutex<Passive>,
    /// What `passive` says, for requests to read without its lock: the end
    /// of the current ejection in ms after `created` (0: none), and whether
    /// there is anything to forgive (errors in a row, past ejections).
    ejected_until_ms: AtomicU64,
    failing: AtomicBool,
    created: Instant,
    requests: Tally,
    failures: AtomicU64,
}

impl Instance {
    fn new(url: &str) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        // The route table checked the URL (`http://host:port`).
        let address = url.parse::<http::Uri>().ok().and_then(|u| u.authority().cloned()).map_or_else(
            || url.trim_start_matches("http://").to_owned(),
            |a| if a.port().is_some() { a.to_string() } else { format!("{}:80", a.host()) },
        );
        let host = http::HeaderValue::from_str(url.trim_start_matches("http://"))
            .unwrap_or(http::HeaderValue::from_static("localhost"));
        Self {
            url,
            id: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            address,
            host,
            counters: std::sync::OnceLock::new(),
            in_flight: Tally::new(),
            healthy: AtomicBool::new(true),
            checks: Mutex::new((0, 0)),
            passive: Mutex::new(Passive::default()),
            ejected_until_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            created: Instant::now(),
            requests: Tally::new(),
            failures: AtomicU64::new(0),
        }
    }

    fn ejected_at(&self, now: Instant) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        until != 0 && until > self.ms(now)
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.created).as_millis()).unwrap_or(u64::MAX)
    }

    /// Mirrors `p` into the fields requests read without the lock.
    fn publish(&self, p: &Passive) {
        let until = p.ejected_until.map_or(0, |t| self.ms(t).max(1));
        self.ejected_until_ms.store(until, Ordering::Release);
        self.failing.store(p.consecutive > 0 || p.ejections > 0, Ordering::Release);
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// One request's claim on an instance, counted in flight until dropped.
#[derive(Debug)]
pub struct InFlight<'a> {
    instance: &'a Instance,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.instance.in_flight.dec();
    }
}

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub instances: Vec<Instance>,
    strategy: Strategy,
    /// Where each thread's next round starts.
    next: ThreadLocal<Padded<Cell<usize>>>,
    pub breaker: CircuitBreaker,
    pub budget: RetryBudget,
    outlier: OutlierSettings,
    /// Health checks of this pool pass on any answer below 500 (a legacy
    /// fallback may have no `/readyz`).
    pub lenient_health: bool,
    /// The health-check path of this pool (default `gateway.health.path`).
    pub health_path: Option<String>,
}

/// What `/admin/upstreams` shows of an instance.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub url: String,
    pub healthy: bool,
    pub ejected: bool,
    pub in_flight: usize,
    pub requests: u64,
    pub failures: u64,
}

/// What `/admin/upstreams` shows of a pool.
#[derive(Debug, Serialize)]
pub struct PoolView {
    pub name: String,
    pub strategy: Strategy,
    pub breaker: &'static str,
    pub instances: Vec<InstanceView>,
}

impl Pool {
    pub fn new(
        name: &str,
        urls: &[String],
        strategy: Strategy,
        breaker: BreakerSettings,
        retry: RetrySettings,
        outlier: OutlierSettings,
    ) -> Self {
        Self {
            name: name.to_owned(),
            instances: urls.iter().map(|u| Instance::new(u)).collect(),
            strategy,
            next: ThreadLocal::new(),
            breaker: CircuitBreaker::new(breaker),
            budget: RetryBudget::new(retry),
            outlier,
            lenient_health: false,
            health_path: None,
        }
    }

    /// The instance URLs, to tell whether a reloaded pool is the same.
    pub fn urls(&self) -> Vec<&str> {
        self.instances.iter().map(|i| i.url.as_str()).collect()
    }

    /// An instance for the next request, other than `avoid` when possible:
    /// healthy and not ejected; if none is, any (better a try than a
    /// certain refusal; the breaker stops a pool that is all down).
    pub fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let n = self.instances.len();
        if n <= 1 {
            // A single instance is tried whatever its state (see below).
            return n.checked_sub(1);
        }
        let now = Instant::now();
        // Instances are visited from a rotating start, so ties and equal
        // candidates share the load (round robin), without allocating.
        let next = self.next.get_or_default();
        let start = next.get();
        next.set(start.wrapping_add(1));
        let in_rotation =
            |i: usize| Some(i) != avoid && self.instances[i].healthy() && !self.instances[i].ejected_at(now);
        let any_in_rotation = (0..n).any(in_rotation);
        let candidate = |i: &usize| if any_in_rotation { in_rotation(*i) } else { Some(*i) != avoid || n == 1 };
        let order = (0..n).map(|k| (start + k) % n);
        match self.strategy {
            Strategy::RoundRobin => order.clone().find(candidate),
            Strategy::LeastInFlight => order.filter(candidate).min_by_key(|i| self.instances[*i].in_flight.get()),
        }
    }

    pub fn start(&self, i: usize) -> InFlight<'_> {
        let instance = &self.instances[i];
        instance.in_flight.inc();
        instance.requests.inc();
        InFlight { instance }
    }

    /// Records how a request to instance `i` went (passive outlier detection).
    pub fn report(&self, i: usize, ok: bool) {
        let instance = &self.instances[i];
        if ok && !instance.failing.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let base = Duration::from_millis(self.outlier.base_ejection_ms);
        if ok {
            if let Ok(mut p) = instance.passive.lock() {
                p.consecutive = 0;
                // A long good run forgives earlier ejections.
                if p.ejected_until.is_some_and(|t| now > t + base * p.ejections.max(1)) {
                    p.ejections = 0;
                    p.ejected_until = None;
                }
                instance.publish(&p);
            }
            return;
        }
        self.instances[i].failures.fetch_add(1, Ordering::Relaxed);
        let ejected_now = self.instances.iter().filter(|x| x.ejected_at(now)).count();
        let Ok(mut p) = self.instances[i].passive.lock() else { return };
        p.consecutive += 1;
        let already = p.ejected_until.is_some_and(|t| t > now);
        let room = (ejected_now + 1) * 100 <= self.outlier.max_ejection_percent as usize * self.instances.len();
        if p.consecutive >= self.outlier.consecutive_errors.max(1) && !already && room {
            p.ejections += 1;
            let length = (base * p.ejections).min(Duration::from_millis(self.outlier.max_ejection_ms).max(base));
            p.ejected_until = Some(now + length);
            p.consecutive = 0;
            tracing::warn!(upstream = %self.name, instance = %self.instances[i].url, ejection_ms = length.as_millis() as u64, "instance ejected after consecutive errors");
        }
        self.instances[i].publish(&p);
    }

    /// Records an active health check of instance `i`.
    pub fn checked(&self, i: usize, ok: bool, health: &HealthSettings) {
        let instance = &self.instances[i];
        let Ok(mut c) = instance.checks.lock() else { return };
        if ok {
            *c = (0, c.1 + 1);
            if c.1 >= health.healthy_after.max(1) && !instance.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!(upstream = %self.name, instance = %instance.url, "instance healthy again");
            }
        } else {
            *c = (c.0 + 1, 0);
            if c.0 >= health.unhealthy_after.max(1) && instance.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(upstream = %self.name, instance = %instance.url, "instance failed its health checks");
            }
        }
    }

    /// Carries health and ejection state over from the pool this one replaces.
    pub fn inherit(&self, old: &Pool) {
        for (new, old) in self.instances.iter().zip(&old.instances) {
            new.healthy.store(old.healthy(), Ordering::Relaxed);
        }
    }

    pub fn view(&self) -> PoolView {
        let now = Instant::now();
        PoolView {
            name: self.name.clone(),
            strategy: self.strategy,
            breaker: self.breaker.state().as_str(),
            instances: self
                .instances
                .iter()
                .map(|i| InstanceView {
                    url: i.url.clone(),
                    healthy: i.healthy(),
                    ejected: i.ejected_at(now),
                    in_flight: usize::try_from(i.in_flight.get()).unwrap_or(0),
                    requests: u64::try_from(i.requests.get()).unwrap_or(0),
                    failures: i.failures.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }

    /// Instances in rotation now (healthy, not ejected).
    pub fn available(&self) -> usize {
        let now = Instant::now();
        self.instances.iter().filter(|i| i.healthy() && !i.ejected_at(now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, strategy: Strategy) -> Pool {
        let urls: Vec<String> = (0..n).map(|i| format!("http://127.0.0.1:{}", 9000 + i)).collect();
        Pool::new(
            "p",
            &urls,
            strategy,
            BreakerSettings::default(),
            RetrySettings::default(),
            OutlierSettings {
                consecutive_errors: 3,
                base_ejection_ms: 60_000,
                max_ejection_ms: 600_000,
                max_ejection_percent: 50,
            },
        )
    }

    #[test]
    fn round_robin_visits_every_instance_in_turn() {
        let p = pool(3, Strategy::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| p.pick(None).unwrap_or(99)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_ne!(p.pick(Some(1)), Some(1), "a retry goes elsewhere");
    }

    #[test]
    fn least_in_flight_prefers_the_idle_instance() {
        let p = pool(2, Strategy::LeastInFlight);
        let _busy = p.start(0);
        assert_eq!(p.pick(None), Some(1));
        assert_eq!(p.pick(None), Some(1));
    }

    #[test]
    fn consecutive_errors_eject_but_never_more_than_the_share() {
        let p = pool(4, Strategy::RoundRobin);
        for _ in 0..3 {
            p.report(0, false);
        }
        assert_eq!(p.available(), 3);
        assert!((0..8).all(|_| p.pick(None) != Some(0)), "ejected instances get no traffic");
        for _ in 0..3 {
            p.report(1, false);
        }
        assert_eq!(p.available(), 2);
        for _ in 0..3 {
            p.report(2, false);
        }
        assert_eq!(p.available(), 2, "at most 50 % are ejected");
        // An error run broken by a success does not eject.
        p.report(3, false);
        p.report(3, false);
        p.report(3, true);
        p.report(3, false);
        assert_eq!(p.available(), 2);
    }

    #[test]
    fn failed_health_checks_take_an_instance_out_and_passing_ones_bring_it_back() {
        let p = pool(2, Strategy::RoundRobin);
        let h = HealthSettings::default();
        p.checked(0, false, &h);
        assert_eq!(p.available(), 2, "one failed check is not enough");
        p.checked(0, false, &h);
        assert_eq!(p.available(), 1);
        assert_eq!(p.pick(None), Some(1));
        p.checked(0, true, &h);
        assert_eq!(p.available(), 2);
    }

    #[test]
    fn with_nothing_available_any_instance_is_tried() {
        let p = pool(1, Strategy::RoundRobin);
        let h = HealthSettings::default();
        p.checked(0, false, &h);
        p.checked(0, false, &h);
        assert_eq!(p.pick(None), Some(0));
        assert_eq!(p.pick(Some(0)), Some(0), "a single instance is retried on itself");
    }
}
