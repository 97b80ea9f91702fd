//! State each thread writes alone.
//!
//! On the request path of a thread-per-core server, any write to memory
//! another core also writes costs a cache-line transfer between the cores
//! (measured on this project's 2-core machine: 36 ns for a contended
//! atomic add against 5 ns for one of its own, docs/benchmarks.md); a
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

#[cfg(test)]
mod tests {
    use super::*;

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
