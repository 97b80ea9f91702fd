//! The raw Argon2id hash rate of this machine at auth's default parameters, for
//! `bench/auth.sh`: one hashing thread per CPU, like auth's hashing pool.

#![allow(clippy::print_stdout)] // a command-line tool: its output is the result

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHasher};

fn main() {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let run_for = Duration::from_secs(5);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let params = Params::new(19_456, 2, 1, None).unwrap_or(Params::DEFAULT);
                let argon = Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, params);
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    let _ = argon.hash_password(b"correct horse battery staple");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let secs = start.elapsed().as_secs_f64();
    println!("{threads} threads, {total} hashes in {secs:.1} s: {:.1} hashes/s", total as f64 / secs);
}
