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

/// A small deterministic generator (splitmix64), so that every process of a benchmark draws
/// the same requests.
#[allow(dead_code)] // not every bench draws requests
pub struct Mix(pub u64);

#[allow(dead_code)]
impl Mix {
    /// The next draw in `0..n`.
    pub fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// The target group's catalog keys (or its id vocabulary when it has no catalog), mapped: the
/// raw ids the benches draw behaviors and candidates from.
#[allow(dead_code)] // not every bench draws requests
pub fn catalog_keys(spec: &atrank::spec::Spec, package: &std::path::Path) -> atrank::vocab::Atv {
    let group = spec.target_group();
    let keys = group
        .catalog
        .as_ref()
        .map(|c| c.keys.clone())
        .unwrap_or_else(|| spec.tables[group.features[0].table].vocab.clone());
    let file = std::fs::File::open(package.join(&keys)).expect("catalog keys");
    // SAFETY: the package's files are not modified while it is served (as for the runtime's
    // own mappings).
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("map the catalog keys");
    atrank::vocab::Atv::open(map, &keys, None).expect("open the catalog keys")
}

/// Times `f`: warm-up (3 calls and 0.1 s at least), then at least `min_calls` calls and
/// `min_seconds` seconds. Returns the sorted durations.
#[allow(dead_code)] // not every bench samples this way
pub fn sample(mut f: impl FnMut(), min_calls: usize, min_seconds: f64) -> Vec<Duration> {
    let start = Instant::now();
    let mut warm = 0;
    while warm < 3 || start.elapsed().as_secs_f64() < 0.1f64.min(min_seconds) {
        f();
        warm += 1;
    }
    let mut t = Vec::new();
    let start = Instant::now();
    while (t.len() < min_calls || start.elapsed().as_secs_f64() < min_seconds) && t.len() < 100_000
    {
        let s = Instant::now();
        f();
        t.push(s.elapsed());
    }
    t.sort();
    t
}
