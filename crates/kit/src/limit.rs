//! Rate limits in memory: the generic cell rate algorithm (GCRA), a token
//! bucket kept as one timestamp per key.
//!
//! A quota lets `burst` requests through at once and then one every
//! `period / rate`. Each key stores its "theoretical arrival time" (TAT); a
//! request is allowed when `TAT - now <= burst_window`, and pushes TAT one
//! emission interval further. Keys whose TAT is in the past hold nothing a
//! fresh key would not, so they are dropped when the table is pruned.
//!
//! Written here rather than taken from `governor` (the well-kept GCRA crate)
//! for two things it does not do: [`Limiter::peek`] (auth asks whether an
//! address is already over its limit before spending a password hash on it,
//! without using up a request), and the same arithmetic as the Redis script
//! the gateway's shared limits run (`gateway::limits`), so a limit means the
//! same thing in memory and across replicas.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;

use crate::hash::FxBuildHasher;

/// `burst` requests at once, refilled at `rate` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub burst: u32,
    pub rate: u32,
    pub period: Duration,
}

impl Quota {
    pub fn per_minute(rate: u32, burst: u32) -> Self {
        Self { burst, rate, period: Duration::from_secs(60) }
    }

    pub fn per_second(rate: u32, burst: u32) -> Self {
        Self { burst, rate, period: Duration::from_secs(1) }
    }

    /// The time one request's worth of allowance takes to come back.
    pub fn interval(&self) -> Duration {
        self.period / self.rate.max(1)
    }

    /// The time a full bucket takes to drain back from empty.
    fn window(&self) -> Duration {
        self.interval() * self.burst.max(1)
    }
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `remaining` more would pass right now.
    Allow { remaining: u32 },
    /// Refused; the next request passes after `retry_after`.
    Deny { retry_after: Duration },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// A quota in nanoseconds: the emission interval and the burst window.
#[derive(Debug, Clone, Copy)]
struct Nanos {
    interval: u64,
    window: u64,
}

impl From<Quota> for Nanos {
    fn from(quota: Quota) -> Self {
        Self {
            interval: u64::try_from(quota.interval().as_nanos()).unwrap_or(u64::MAX).max(1),
            window: u64::try_from(quota.window().as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// The GCRA step: given a key's TAT (nanoseconds on the limiter's clock,
/// `None` for a fresh key), decides and returns the new TAT.
fn gcra(quota: Nanos, tat: Option<u64>, now: u64) -> (Decision, Option<u64>) {
    let Nanos { interval, window } = quota;
    let tat = tat.filter(|t| *t > now).unwrap_or(now);
    let next = tat.saturating_add(interval);
    // Allowed when the new TAT is no further ahead than the burst window.
    let ahead = next - now;
    if ahead > window {
        return (Decision::Deny { retry_after: Duration::from_nanos(ahead - window) }, None);
    }
    let remaining = u32::try_from((window - ahead) / interval).unwrap_or(u32::MAX);
    (Decision::Allow { remaining }, Some(next))
}

/// A keyed GCRA limiter in memory, bounded to `max_keys` keys.
///
/// Each key's state is one atomic, counted by compare-and-swap, so threads
/// counting requests never wait for one another (a thread preempted inside
/// a mutex made the other wait for it; see
/// [`crate::metrics::LatencyHistogram`]). Each thread finds a key's atomic
/// in a map of its own, so a request costs that one shared write and no
/// lock (see [`crate::local`]); only a key new to a thread takes the shared
/// map's lock, and only a key new to the limiter its write lock.
#[derive(Debug)]
pub struct Limiter<K: Send> {
    quota: Quota,
    nanos: Nanos,
    max_keys: usize,
    epoch: Instant,
    /// Each key's TAT in nanoseconds after `epoch`.
    state: RwLock<Cells<K>>,
    /// Each thread's keys so far, with the `pruned` count they were found at.
    local: ThreadLocal<RefCell<(u64, Cells<K>)>>,
    /// How often keys were dropped from `state`: threads forget theirs then,
    /// so that a key dropped and made again is one atomic for all.
    pruned: AtomicU64,
}

/// Keys and their atomics.
type Cells<K> = HashMap<K, Arc<AtomicU64>, FxBuildHasher>;

impl<K: Hash + Eq + Clone + Send> Limiter<K> {
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            nanos: quota.into(),
            max_keys: 100_000,
            epoch: Instant::now(),
            state: RwLock::new(HashMap::default()),
            local: ThreadLocal::new(),
            pruned: AtomicU64::new(0),
        }
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    fn clock(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Would a request for `key` pass now? Counts nothing: for limits that
    /// charge only some outcomes (failed logins), [`Limiter::check`] after.
    pub fn peek(&self, key: &K) -> Decision {
        let now = self.clock(Instant::now());
        let tat = self.state.read().ok().and_then(|s| s.get(key).map(|t| t.load(Ordering::Acquire)));
        gcra(self.nanos, tat, now).0
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Decision {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: &K, now: Instant) -> Decision {
        let now = self.clock(now);
        let pruned = self.pruned.load(Ordering::Acquire);
        let local = self.local.get_or_default();
        {
            let mut local = local.borrow_mut();
            if local.0 != pruned {
                *local = (pruned, HashMap::default());
            }
            if let Some(tat) = local.1.get(key) {
                return self.step(tat, now);
            }
        }
        let Some(tat) = self.shared_cell(key, now) else {
            // Full of live keys: judged as new, not remembered.
            return gcra(self.nanos, None, now).0;
        };
        let decision = self.step(&tat, now);
        let mut local = local.borrow_mut();
        if local.1.len() >= self.max_keys {
            local.1.clear();
        }
        local.1.insert(key.clone(), tat);
        decision
    }

    /// The atomic of `key` in the shared map, made if it is new and there
    /// is room.
    fn shared_cell(&self, key: &K, now: u64) -> Option<Arc<AtomicU64>> {
        if let Ok(state) = self.state.read()
            && let Some(tat) = state.get(key)
        {
            return Some(tat.clone());
        }
        // A poisoned lock means a panic mid-update; limiting nothing is
        // better than refusing everything.
        let Ok(mut state) = self.state.write() else { return None };
        if !state.contains_key(key) {
            if state.len() >= self.max_keys {
                // Keys whose TAT is past hold nothing a fresh key would not.
                state.retain(|_, t| t.load(Ordering::Acquire) > now);
                self.pruned.fetch_add(1, Ordering::AcqRel);
            }
            if state.len() >= self.max_keys {
                return None;
            }
        }
        // A thread that took the write lock first may have added the key;
        // then this request counts against the state it made.
        Some(state.entry(key.clone()).or_insert_with(|| Arc::new(AtomicU64::new(0))).clone())
    }

    /// One request against `tat` (0: a fresh key), racing other threads by
    /// compare-and-swap.
    fn step(&self, tat: &AtomicU64, now: u64) -> Decision {
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let (decision, next) = gcra(self.nanos, (current != 0).then_some(current), now);
            let Some(next) = next else { return decision };
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return decision,
                Err(actual) => current = actual,
            }
        }
    }
}

/// A sliding-window counter: at most `limit` requests in any `window`,
/// estimated from the current and previous fixed windows (the previous one
/// weighted by how much of it still overlaps). Stricter than a bucket for
/// bursts: meant for sensitive routes (sign-in, reset).
#[derive(Debug)]
pub struct SlidingWindow<K> {
    limit: u32,
    window: Duration,
    max_keys: usize,
    epoch: Instant,
    /// key → (index of the current window, its count, the previous window's count)
    state: Mutex<HashMap<K, (u64, u32, u32)>>,
}

/// One step of the sliding-window estimate. `elapsed` is the time into the
/// current window; returns the decision and the counts to store.
pub fn sliding(limit: u32, window: Duration, prev: u32, cur: u32, elapsed: Duration) -> (Decision, u32) {
    let w = window.as_secs_f64().max(0.001);
    let weight = 1.0 - (elapsed.as_secs_f64() / w).min(1.0);
    let estimate = f64::from(prev) * weight + f64::from(cur);
    if estimate + 1.0 > f64::from(limit) {
        // When the estimate falls below `limit - 1`: the previous window's
        // share shrinks linearly; if the current window alone is full, at
        // the next window plus the time its count takes to fade likewise.
        let room = f64::from(limit) - 1.0 - f64::from(cur);
        let wait = if room >= 0.0 && prev > 0 {
            let needed_weight = room / f64::from(prev);
            (1.0 - needed_weight) * w - elapsed.as_secs_f64()
        } else {
            let fade = 1.0 - (f64::from(limit) - 1.0) / f64::from(cur.max(1));
            (w - elapsed.as_secs_f64()) + fade.max(0.0) * w
        };
        return (Decision::Deny { retry_after: Duration::from_secs_f64(wait.max(0.001)) }, cur);
    }
    let remaining = (f64::from(limit) - estimate - 1.0).floor().max(0.0) as u32;
    (Decision::Allow { remaining }, cur + 1)
}

impl<K: Hash + Eq + Clone> SlidingWindow<K> {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, max_keys: 100_000, epoch: Instant::now(), state: Mutex::new(HashMap::new()) }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn check(&self, key: &K) -> Decision {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: &K, now: Instant) -> Decision {
        let since = now.saturating_duration_since(self.epoch);
        let w = self.window.as_nanos().max(1);
        let index = u64::try_from(since.as_nanos() / w).unwrap_or(u64::MAX);
        let elapsed = Duration::from_nanos(u64::try_from(since.as_nanos() % w).unwrap_or(0));
        let Ok(mut state) = self.state.lock() else { return Decision::Allow { remaining: 0 } };
        let (prev, cur) = match state.get(key) {
            Some((i, c, _)) if *i == index => (state[key].2, *c),
            Some((i, c, _)) if *i + 1 == index => (*c, 0),
            _ => (0, 0),
        };
        let (decision, stored) = sliding(self.limit, self.window, prev, cur, elapsed);
        if state.len() >= self.max_keys && !state.contains_key(key) {
            state.retain(|_, (i, _, _)| *i + 1 >= index);
        }
        if state.len() < self.max_keys || state.contains_key(key) {
            state.insert(key.clone(), (index, stored, prev));
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exactly_burst_pass_then_one_per_interval() {
        let quota = Quota::per_second(2, 5);
        let limiter = Limiter::new(quota);
        let t0 = Instant::now();
        let passed = (0..6).filter(|_| limiter.check_at(&"k", t0).is_allowed()).count();
        assert_eq!(passed, 5);
        let Decision::Deny { retry_after } = limiter.check_at(&"k", t0) else { panic!("should deny") };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert!(!limiter.check_at(&"k", t0 + Duration::from_millis(499)).is_allowed());
        assert!(limiter.check_at(&"k", t0 + Duration::from_millis(500)).is_allowed());
        assert!(!limiter.check_at(&"k", t0 + Duration::from_millis(500)).is_allowed());
        // Other keys have their own bucket.
        assert!(limiter.check_at(&"other", t0).is_allowed());
    }

    #[test]
    fn a_sliding_window_allows_limit_per_window_and_remembers_the_last_one() {
        let w = SlidingWindow::new(3, Duration::from_secs(60));
        let t0 = w.epoch;
        assert_eq!((0..5).filter(|_| w.check_at(&"ip", t0).is_allowed()).count(), 3);
        // Half a window later the previous window still counts half: 3 × 0.5 = 1.5 → one more passes.
        let next = t0 + Duration::from_secs(90);
        assert!(w.check_at(&"ip", next).is_allowed());
        assert!(!w.check_at(&"ip", next).is_allowed());
        // Two windows on, all is forgotten.
        let later = t0 + Duration::from_secs(180);
        assert_eq!((0..5).filter(|_| w.check_at(&"ip", later).is_allowed()).count(), 3);
    }

    #[test]
    fn threads_racing_on_one_key_pass_exactly_the_burst() {
        let limiter = Limiter::new(Quota::per_minute(1, 100));
        let t0 = Instant::now();
        let passed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        if limiter.check_at(&"k", t0).is_allowed() {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn remaining_counts_down() {
        let limiter = Limiter::new(Quota::per_minute(60, 3));
        let t0 = Instant::now();
        assert_eq!(limiter.check_at(&1, t0), Decision::Allow { remaining: 2 });
        assert_eq!(limiter.check_at(&1, t0), Decision::Allow { remaining: 1 });
        assert_eq!(limiter.check_at(&1, t0), Decision::Allow { remaining: 0 });
        // A full refill after the whole window.
        assert_eq!(limiter.check_at(&1, t0 + Duration::from_secs(3)), Decision::Allow { remaining: 2 });
    }
}
