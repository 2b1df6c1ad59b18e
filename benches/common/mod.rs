//! Shared by the harness-free benchmarks (`#[path = "common/mod.rs"] mod common;`).

use std::time::{Duration, Instant};

/// The median wall time of `reps` calls of `f`, after 3 calls to warm up.
pub fn median(mut f: impl FnMut(), reps: usize) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<Duration> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}
