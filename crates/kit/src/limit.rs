//! Rate limits in memory: the generic cell rate algorithm (GCRA), a token
//! bucket kept as one timestamp per key.
//!
//! A quota lets `burst` requests through at once and then one every
//! `period / rate`. Each key stores its "theoretical arrival time" (TAT); a
//! request is allowed when `TAT - now <= burst_window`, and pushes TAT one
//! emission interval further. Keys whose TAT is in the past hold nothing a
//! fresh key would not, so they are dropped when the table is pruned.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The GCRA step: given a key's TAT, decides and returns the new TAT.
pub fn gcra(quota: &Quota, tat: Option<Instant>, now: Instant) -> (Decision, Option<Instant>) {
    let interval = quota.interval();
    let window = quota.window();
    let tat = tat.filter(|t| *t > now).unwrap_or(now);
    let next = tat + interval;
    // Allowed when the new TAT is no further ahead than the burst window.
    let ahead = next.saturating_duration_since(now);
    if ahead > window {
        return (Decision::Deny { retry_after: ahead - window }, None);
    }
    let remaining = u32::try_from((window - ahead).as_nanos() / interval.as_nanos().max(1)).unwrap_or(u32::MAX);
    (Decision::Allow { remaining }, Some(next))
}

/// A keyed GCRA limiter in memory, bounded to `max_keys` keys.
#[derive(Debug)]
pub struct Limiter<K> {
    quota: Quota,
    max_keys: usize,
    state: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(quota: Quota) -> Self {
        Self { quota, max_keys: 100_000, state: Mutex::new(HashMap::new()) }
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Would a request for `key` pass now? Counts nothing: for limits that
    /// charge only some outcomes (failed logins), [`Limiter::check`] after.
    pub fn peek(&self, key: &K) -> Decision {
        let now = Instant::now();
        let tat = self.state.lock().ok().and_then(|s| s.get(key).copied());
        gcra(&self.quota, tat, now).0
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Decision {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: &K, now: Instant) -> Decision {
        let Ok(mut state) = self.state.lock() else {
            // A poisoned lock means a panic mid-update; limiting nothing is
            // better than refusing everything.
            return Decision::Allow { remaining: 0 };
        };
        let (decision, tat) = gcra(&self.quota, state.get(key).copied(), now);
        if let Some(tat) = tat {
            if state.len() >= self.max_keys && !state.contains_key(key) {
                state.retain(|_, t| *t > now);
            }
            if state.len() < self.max_keys || state.contains_key(key) {
                state.insert(key.clone(), tat);
            }
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
