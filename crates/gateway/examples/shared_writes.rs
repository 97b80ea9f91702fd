//! What a write to memory another core also writes costs, for
//! docs/benchmarks.md: two threads add to one atomic counter, then each to
//! a counter of its own (in its own cache line), with some work between
//! additions. The difference is what every shared counter, lock word or
//! reference count on the gateway's request path cost it per request.
//!
//! `cargo run --release -p gateway --example shared_writes`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[repr(align(128))]
struct Padded(AtomicU64);

/// Nanoseconds per addition, with `work` rounds of arithmetic between them.
fn run(shared: bool, work: u64) -> f64 {
    let cells = Arc::new([Padded(AtomicU64::new(0)), Padded(AtomicU64::new(0))]);
    let n = 5_000_000u64;
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let cells = cells.clone();
            std::thread::spawn(move || {
                let cell = if shared { &cells[0].0 } else { &cells[t].0 };
                let mut x = 1u64;
                for _ in 0..n {
                    cell.fetch_add(1, Ordering::Relaxed);
                    for _ in 0..work {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                }
                std::hint::black_box(x);
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

#[allow(clippy::print_stdout)]
fn main() {
    for work in [0, 50, 200] {
        println!(
            "work {work:>3}: one shared counter {:.1} ns per addition, one each {:.1} ns",
            run(true, work),
            run(false, work)
        );
    }
}
