//! State each thread writes alone.
//!
//! On the request path of a thread-per-core server, any write to memory
//! another core also writes costs a cache-line transfer between the cores
//! (measured on this project's 2-core machine by the gateway's
//! `shared_writes` example: 40–45 ns for an atomic add to a counter the
//! other core also adds to, against 6 ns for one of its own); a
//! proxied request used to make some thirty of them (counters, lock words,
//! reference counts). A [`Tally`] is one number kept as a cell per thread:
//! each thread adds to its own, in its own cache line, and readers sum the
//! cells.

use std::sync::atomic::{AtomicI64, Ordering};

use thread_local::ThreadLocal;

/// A value alone in its cache line (two lines: adjacent-line prefetching
/// pairs them on x86), so that neighbours written by other threads do not
/// take the line away.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A count kept per thread, read as the sum.
#[derive(Debug, Default)]
pub struct Tally(ThreadLocal<Padded<AtomicI64>>);

impl Tally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` (negative to take away) to this thread's cell. Only this
    /// thread writes it, so a load and a store do: no locked instruction.
    pub fn add(&self, n: i64) {
        let cell = self.0.get_or_default();
        cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn dec(&self) {
        self.add(-1);
    }

    /// The sum over every thread (a cell being written may be read just
    /// before or after its write).
    pub fn get(&self) -> i64 {
        self.0.iter().map(|cell| cell.load(Ordering::Relaxed)).fold(0, i64::wrapping_add)
    }
}

/// Unix time in milliseconds at `at`, without reading the wall clock each
/// time: from an instant and wall-clock reading of this thread's, taken
/// again when `at` is a second or more away from it. (For request ids and
/// token expiry, which need no more than that; a clock step shows within a
/// second.)
pub fn unix_ms_at(at: std::time::Instant) -> u64 {
    use std::cell::Cell;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    thread_local! {
        static ANCHOR: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    }
    ANCHOR.with(|anchor| {
        let near = |(when, _): (Instant, u64)| at.checked_duration_since(when).is_some_and(|d| d.as_secs() == 0);
        let (when, ms) = match anchor.get().filter(|a| near(*a)) {
            Some(a) => a,
            None => {
                let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let fresh = (Instant::now(), wall);
                anchor.set(Some(fresh));
                fresh
            }
        };
        // `at` may come a moment before a fresh anchor.
        match at.checked_duration_since(when) {
            Some(after) => ms + after.as_millis() as u64,
            None => ms.saturating_sub(when.duration_since(at).as_millis() as u64),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_milliseconds_from_an_instant_track_the_clock() {
        let wall =
            || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let before = wall();
        let at = unix_ms_at(std::time::Instant::now());
        let later = unix_ms_at(std::time::Instant::now() + std::time::Duration::from_millis(1500));
        let after = wall();
        assert!(before <= at && at <= after + 1, "{before} {at} {after}");
        assert!((1499..=1502 + after - before).contains(&(later - at)), "{}", later - at);
        let earlier = unix_ms_at(std::time::Instant::now() - std::time::Duration::from_millis(300));
        assert!(earlier + 299 <= wall() && earlier + 305 + (after - before) >= wall(), "{earlier}");
    }

    #[test]
    fn a_tally_sums_what_every_thread_added() {
        let tally = std::sync::Arc::new(Tally::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let tally = tally.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        tally.inc();
                    }
                    tally.add(-t);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap_or_default();
        }
        assert_eq!(tally.get(), 40_000 - 6);
        assert!(std::mem::align_of::<Padded<AtomicI64>>() >= 128);
    }
}
