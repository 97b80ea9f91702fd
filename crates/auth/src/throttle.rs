//! Brute-force throttling for login, the second factor and password reset.
//!
//! Three rules, all in memory (one auth instance sees its own attempts; see
//! docs/auth.md for several instances):
//!
//! - **Per IP**, a token bucket charged by every failed attempt (`ip_burst` at
//!   once, `ip_per_minute` after): one address cannot spray many accounts,
//!   while a school or office behind one address signs in freely.
//! - **Per account and IP**, a progressive delay: after `free_failures` wrong
//!   answers in a row, each further attempt must wait 1 s, 2 s, 4 s … up to
//!   `max_delay_secs` after the last failure. A success from that address
//!   clears it. An attacker elsewhere cannot lock the owner out this way.
//! - **Per account, from every address**, the same delay after
//!   `account_free_failures` failures but capped at `account_max_delay_secs`:
//!   it bounds a distributed guessing attack while the owner, at worst, waits
//!   that cap between attempts (never a lockout).
//!
//! Refused attempts cost no password hash, so the Argon2 work stays bounded by
//! the buckets however fast requests arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kit::limit::{Decision, Limiter, Quota};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ThrottleSettings {
    pub ip_burst: u32,
    pub ip_per_minute: u32,
    pub free_failures: u32,
    pub max_delay_secs: u64,
    pub account_free_failures: u32,
    pub account_max_delay_secs: u64,
    /// Failures older than this are forgotten.
    pub forget_after_secs: u64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            ip_burst: 30,
            ip_per_minute: 20,
            free_failures: 5,
            max_delay_secs: 15 * 60,
            account_free_failures: 20,
            account_max_delay_secs: 60,
            forget_after_secs: 3600,
        }
    }
}

/// What is being guarded, so a reset flood does not slow sign-ins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guarded {
    Login,
    SecondFactor,
    Reset,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

type FailureKey = (Guarded, String, Option<IpAddr>);

#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    per_ip: Limiter<(Guarded, IpAddr)>,
    failures: Mutex<HashMap<FailureKey, Failures>>,
}

const MAX_TRACKED: usize = 200_000;

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Self {
        let per_ip = Limiter::new(Quota::per_minute(settings.ip_per_minute.max(1), settings.ip_burst.max(1)));
        Self { settings, per_ip, failures: Mutex::new(HashMap::new()) }
    }

    /// May an attempt on `account` from `ip` go ahead? `Err` carries how long
    /// to wait. Counts nothing; [`Throttle::failed`] does.
    pub fn check(&self, what: Guarded, account: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let s = &self.settings;
        if let Some(wait) = self.delay(&(what, account.to_owned(), ip), s.free_failures, s.max_delay_secs, now) {
            return Err(wait);
        }
        if let Some(wait) =
            self.delay(&(what, account.to_owned(), None), s.account_free_failures, s.account_max_delay_secs, now)
        {
            return Err(wait);
        }
        if let Some(ip) = ip
            && let Decision::Deny { retry_after } = self.per_ip.peek(&(what, ip))
        {
            return Err(retry_after);
        }
        Ok(())
    }

    fn delay(&self, key: &FailureKey, free: u32, max_secs: u64, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().ok()?;
        let f = failures.get(key)?;
        if f.count < free {
            return None;
        }
        let exp = (f.count - free).min(20);
        let delay = Duration::from_secs((1u64 << exp).min(max_secs));
        let until = f.last + delay;
        (until > now).then(|| until - now)
    }

    /// Records a wrong answer.
    pub fn failed(&self, what: Guarded, account: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        if let Some(ip) = ip {
            self.per_ip.check_at(&(what, ip), now);
        }
        let forget = Duration::from_secs(self.settings.forget_after_secs);
        let Ok(mut failures) = self.failures.lock() else { return };
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| now.duration_since(f.last) < forget);
        }
        // Without an address the two keys are one: count it once.
        let keys = if ip.is_some() {
            vec![(what, account.to_owned(), ip), (what, account.to_owned(), None)]
        } else {
            vec![(what, account.to_owned(), None)]
        };
        for key in keys {
            let entry = failures.entry(key).or_insert(Failures { count: 0, last: now });
            if now.duration_since(entry.last) >= forget {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    /// Records a right answer from `ip`: its progressive delay starts over.
    pub fn succeeded(&self, what: Guarded, account: &str, ip: Option<IpAddr>) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&(what, account.to_owned(), ip));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn delay_grows_after_the_free_failures_and_only_for_that_address() {
        let t = Throttle::new(ThrottleSettings { ip_burst: 1000, ..Default::default() });
        for _ in 0..5 {
            assert!(t.check(Guarded::Login, "a@x.io", ip(1)).is_ok());
            t.failed(Guarded::Login, "a@x.io", ip(1));
        }
        let wait = t.check(Guarded::Login, "a@x.io", ip(1)).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        // The owner, elsewhere, is not held back.
        assert!(t.check(Guarded::Login, "a@x.io", ip(2)).is_ok());
        // Other flows are separate.
        assert!(t.check(Guarded::Reset, "a@x.io", ip(1)).is_ok());
        t.failed(Guarded::Login, "a@x.io", ip(1));
        let wait = t.check(Guarded::Login, "a@x.io", ip(1)).unwrap_err();
        assert!(wait > Duration::from_millis(1900), "{wait:?}");
        t.succeeded(Guarded::Login, "a@x.io", ip(1));
        assert!(t.check(Guarded::Login, "a@x.io", ip(1)).is_ok());
    }

    #[test]
    fn many_addresses_on_one_account_meet_a_capped_delay() {
        let t = Throttle::new(ThrottleSettings { ip_burst: 1000, ..Default::default() });
        for n in 0..40 {
            t.failed(Guarded::Login, "a@x.io", ip(n));
        }
        let wait = t.check(Guarded::Login, "a@x.io", ip(200)).unwrap_err();
        assert!(wait <= Duration::from_secs(60), "capped: {wait:?}");
    }

    #[test]
    fn one_address_spraying_accounts_meets_its_bucket() {
        let t = Throttle::new(ThrottleSettings { ip_burst: 3, ip_per_minute: 3, ..Default::default() });
        for _ in 0..10 {
            t.succeeded(Guarded::Login, "ok@x.io", ip(1));
            assert!(t.check(Guarded::Login, "ok@x.io", ip(1)).is_ok(), "successes cost nothing");
        }
        for n in 0..3 {
            assert!(t.check(Guarded::Login, &format!("u{n}@x.io"), ip(1)).is_ok());
            t.failed(Guarded::Login, &format!("u{n}@x.io"), ip(1));
        }
        let wait = t.check(Guarded::Login, "u9@x.io", ip(1)).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
    }
}
