//! Resilience for calls to other services, shared by the gateway and by
//! services' own clients: a circuit breaker per upstream and a retry budget.
//!
//! **Breaker.** Closed, it counts consecutive failures; at `failure_threshold`
//! it opens and refuses calls at once (the caller answers 503 with
//! `Retry-After`) for `open_for`. Then it is half-open: up to `half_open_probes`
//! calls go through; a success closes it, a failure opens it again for twice as
//! long (capped at `max_open_for`).
//!
//! **Retry budget.** Retries only ever add a bounded share of load: each first
//! attempt deposits `ratio` of a retry (default 0.2), each retry withdraws a
//! whole one, and `min_per_sec` retries are always allowed so a quiet service
//! can still retry. A failing upstream therefore sees at most about 20 % more
//! requests, never a retry storm. Whether a request may be retried at all
//! (idempotent methods only) is the caller's decision.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// First open period, in milliseconds; doubles on each failed probe.
    pub open_ms: u64,
    /// Longest open period, in milliseconds.
    pub max_open_ms: u64,
    /// Calls let through while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failure_threshold: 5, open_ms: 5_000, max_open_ms: 60_000, half_open_probes: 1 }
    }
}

/// The breaker's state, as metrics and `/admin/upstreams` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 half-open, 2 open: a gauge value.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant, open_for: Duration },
    HalfOpen { in_flight: u32, open_for: Duration },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
    /// Closed with no failure counted: calls go through and successes
    /// change nothing, so neither takes the lock (the common case, on every
    /// request through the gateway). Written under the lock.
    clean: AtomicBool,
}

/// Refused by an open breaker: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen {
    pub retry_after: Duration,
}

/// A call the breaker let through; report how it went with
/// [`CircuitBreaker::success`] or [`CircuitBreaker::failure`].
#[derive(Debug)]
#[must_use]
pub struct Permit {
    probe: bool,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self { settings, inner: Mutex::new(Inner::Closed { failures: 0 }), clean: AtomicBool::new(true) }
    }

    pub fn acquire(&self) -> Result<Permit, BreakerOpen> {
        // While all is well no clock is read (every request asks).
        if self.clean.load(Ordering::Acquire) {
            return Ok(Permit { probe: false });
        }
        self.acquire_at(Instant::now())
    }

    pub fn acquire_at(&self, now: Instant) -> Result<Permit, BreakerOpen> {
        if self.clean.load(Ordering::Acquire) {
            return Ok(Permit { probe: false });
        }
        let Ok(mut inner) = self.inner.lock() else { return Ok(Permit { probe: false }) };
        match &mut *inner {
            Inner::Closed { .. } => Ok(Permit { probe: false }),
            Inner::Open { until, open_for } => {
                if now < *until {
                    return Err(BreakerOpen { retry_after: *until - now });
                }
                *inner = Inner::HalfOpen { in_flight: 1, open_for: *open_for };
                Ok(Permit { probe: true })
            }
            Inner::HalfOpen { in_flight, .. } => {
                if *in_flight < self.settings.half_open_probes.max(1) {
                    *in_flight += 1;
                    Ok(Permit { probe: true })
                } else {
                    Err(BreakerOpen { retry_after: Duration::from_secs(1) })
                }
            }
        }
    }

    pub fn success(&self, _permit: Permit) {
        if self.clean.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut inner) = self.inner.lock() {
            *inner = Inner::Closed { failures: 0 };
            self.clean.store(true, Ordering::Release);
        }
    }

    pub fn failure(&self, permit: Permit) {
        self.failure_at(permit, Instant::now());
    }

    pub fn failure_at(&self, permit: Permit, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else { return };
        self.clean.store(false, Ordering::Release);
        let first = Duration::from_millis(self.settings.open_ms);
        let max = Duration::from_millis(self.settings.max_open_ms).max(first);
        match &mut *inner {
            Inner::Closed { failures } => {
                *failures += 1;
                if *failures >= self.settings.failure_threshold.max(1) {
                    *inner = Inner::Open { until: now + first, open_for: first };
                }
            }
            Inner::HalfOpen { open_for, .. } if permit.probe => {
                let next = (*open_for * 2).min(max);
                *inner = Inner::Open { until: now + next, open_for: next };
            }
            // A call that started before the breaker opened: already counted.
            _ => {}
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.inner.lock().as_deref() {
            Ok(Inner::Closed { .. }) | Err(_) => BreakerState::Closed,
            Ok(Inner::Open { until, .. }) if Instant::now() < *until => BreakerState::Open,
            Ok(Inner::Open { .. } | Inner::HalfOpen { .. }) => BreakerState::HalfOpen,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// Retries allowed per first attempt, over time.
    pub ratio: f64,
    /// Retries always allowed per second.
    pub min_per_sec: u32,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self { ratio: 0.2, min_per_sec: 10, max_attempts: 2 }
    }
}

#[derive(Debug)]
struct Floor {
    second: Instant,
    used: u32,
}

#[derive(Debug)]
pub struct RetryBudget {
    settings: RetrySettings,
    /// Saved retries, in millionths.
    balance: AtomicU64,
    /// First attempts each thread has not yet paid into `balance`: it pays
    /// them in batches of [`DEPOSIT_BATCH`], so the shared balance is not
    /// written on every request (see [`crate::local`]).
    pending: thread_local::ThreadLocal<crate::local::Padded<std::cell::Cell<u64>>>,
    /// The retries always allowed, per second.
    floor: Mutex<Floor>,
}

/// First attempts a thread counts before paying them into the balance.
const DEPOSIT_BATCH: u64 = 16;

/// A whole retry, in the balance's unit.
const RETRY: u64 = 1_000_000;

/// The most retries a budget can save up.
const MAX_BALANCE: u64 = 100;

impl RetryBudget {
    pub fn new(settings: RetrySettings) -> Self {
        Self {
            settings,
            balance: AtomicU64::new(0),
            pending: thread_local::ThreadLocal::new(),
            floor: Mutex::new(Floor { second: Instant::now(), used: 0 }),
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.settings.max_attempts.max(1)
    }

    /// Records a first attempt. The balance may run past the most that can
    /// be saved; withdrawals cap it.
    pub fn deposit(&self) {
        let pending = self.pending.get_or_default();
        pending.set(pending.get() + 1);
        if pending.get() >= DEPOSIT_BATCH {
            self.pay(pending);
        }
    }

    /// Pays this thread's pending first attempts into the balance.
    fn pay(&self, pending: &std::cell::Cell<u64>) {
        let share = (self.settings.ratio.clamp(0.0, 1.0) * RETRY as f64) as u64;
        if pending.get() > 0 && self.balance.load(Ordering::Relaxed) < MAX_BALANCE * RETRY {
            self.balance.fetch_add(share * pending.get(), Ordering::Relaxed);
        }
        pending.set(0);
    }

    /// May a retry go ahead? Withdraws it if so.
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(Instant::now())
    }

    pub fn try_retry_at(&self, now: Instant) -> bool {
        // What this thread has counted so far is saved for it.
        self.pay(self.pending.get_or_default());
        let withdrawn = self.balance.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            b.checked_sub(RETRY).map(|left| left.min((MAX_BALANCE - 1) * RETRY))
        });
        if withdrawn.is_ok() {
            return true;
        }
        let Ok(mut floor) = self.floor.lock() else { return false };
        if now.duration_since(floor.second) >= Duration::from_secs(1) {
            floor.second = now;
            floor.used = 0;
        }
        if floor.used < self.settings.min_per_sec {
            floor.used += 1;
            return true;
        }
        false
    }
}

/// A breaker and a retry budget around calls to one upstream: what a
/// service's own client uses (the gateway uses the parts directly).
#[derive(Debug)]
pub struct Guard {
    pub breaker: CircuitBreaker,
    pub budget: RetryBudget,
}

impl Guard {
    pub fn new(breaker: BreakerSettings, retry: RetrySettings) -> Self {
        Self { breaker: CircuitBreaker::new(breaker), budget: RetryBudget::new(retry) }
    }

    /// Runs `call`, again (up to the budget's attempts) when `failed` says
    /// the result is a failure and the call is `idempotent`. `Err` when the
    /// breaker is open: nothing was sent.
    pub async fn run<T, F, Fut>(
        &self,
        idempotent: bool,
        failed: impl Fn(&T) -> bool,
        mut call: F,
    ) -> Result<T, BreakerOpen>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        let permit = self.breaker.acquire()?;
        self.budget.deposit();
        let mut attempt = 1;
        loop {
            let result = call().await;
            let bad = failed(&result);
            if bad && idempotent && attempt < self.budget.max_attempts() && self.budget.try_retry() {
                attempt += 1;
                continue;
            }
            if bad {
                self.breaker.failure(permit);
            } else {
                self.breaker.success(permit);
            }
            return Ok(result);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_then_probes_and_closes() {
        let b = CircuitBreaker::new(BreakerSettings {
            failure_threshold: 3,
            open_ms: 1000,
            max_open_ms: 4000,
            half_open_probes: 1,
        });
        let t0 = Instant::now();
        for _ in 0..2 {
            let p = b.acquire_at(t0).unwrap();
            b.failure_at(p, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let p = b.acquire_at(t0).unwrap();
        b.success(p);
        for _ in 0..3 {
            let p = b.acquire_at(t0).unwrap();
            b.failure_at(p, t0);
        }
        let open = b.acquire_at(t0 + Duration::from_millis(400)).unwrap_err();
        assert_eq!(open.retry_after, Duration::from_millis(600));
        // Half-open: one probe at a time.
        let probe = b.acquire_at(t0 + Duration::from_millis(1000)).unwrap();
        assert!(b.acquire_at(t0 + Duration::from_millis(1000)).is_err());
        // A failed probe opens it for twice as long.
        b.failure_at(probe, t0 + Duration::from_millis(1000));
        let open = b.acquire_at(t0 + Duration::from_millis(1000)).unwrap_err();
        assert_eq!(open.retry_after, Duration::from_millis(2000));
        let probe = b.acquire_at(t0 + Duration::from_millis(3000)).unwrap();
        b.success(probe);
        assert!(b.acquire_at(t0 + Duration::from_millis(3000)).is_ok());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn retries_stay_within_a_fifth_of_the_traffic() {
        let budget = RetryBudget::new(RetrySettings { ratio: 0.2, min_per_sec: 0, max_attempts: 2 });
        let now = Instant::now();
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            // Every request fails and wants a retry.
            if budget.try_retry_at(now) {
                retries += 1;
            }
        }
        assert!((199..=200).contains(&retries), "{retries}");
    }

    #[tokio::test]
    async fn a_guard_retries_idempotent_calls_and_opens_on_failures() {
        let guard = Guard::new(
            BreakerSettings { failure_threshold: 2, open_ms: 60_000, ..Default::default() },
            RetrySettings { min_per_sec: 100, ..Default::default() },
        );
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r = guard
            .run(true, |r: &u32| *r == 0, || async { calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) })
            .await;
        assert_eq!(r, Ok(1), "the first call failed (0), the retry succeeded");
        let fail = || async { 500 };
        assert_eq!(guard.run(false, |r| *r >= 500, fail).await, Ok(500), "not idempotent: one attempt");
        assert_eq!(guard.run(false, |r| *r >= 500, fail).await, Ok(500));
        assert!(guard.run(false, |r| *r >= 500, fail).await.is_err(), "open after two failures: nothing sent");
    }

    #[test]
    fn a_quiet_service_may_still_retry_a_few_times_a_second() {
        let budget = RetryBudget::new(RetrySettings { ratio: 0.2, min_per_sec: 3, max_attempts: 2 });
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| budget.try_retry_at(t0)).count(), 3);
        assert_eq!((0..10).filter(|_| budget.try_retry_at(t0 + Duration::from_secs(1))).count(), 3);
    }
}
