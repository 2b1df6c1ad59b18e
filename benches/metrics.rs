//! What the per-model counters cost (src/metrics.rs), against a scoring call. Regenerates the
//! "Metrics overhead" figures in docs/benchmarks.md:
//!
//!     ATRANK_ORT_LIB=.cache/onnxruntime-1.31.1/lib/libonnxruntime.so.1.31.1 \
//!         cargo bench --bench metrics --no-default-features --features backend-ort -- [PACKAGE]
//!
//! (release profile; ONNX Runtime only, so that no release build of tract is needed: ORT is the
//! faster backend, so its calls are the ones the counters weigh most on). PACKAGE defaults to
//! tests/fixtures/tiny. Measures, as medians of repeated runs: one recorded call with an empty
//! body (`Metrics::observe`: an `Instant` pair and three relaxed atomic additions), the same
//! with two threads recording into the same counters at once (the cache line bounces), and
//! `Model::score` (which records itself) on the package's first golden request.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atrank::metrics::{Entry, Metrics};
use atrank::{Backend, Behavior, Model, Request};

/// Median over `rounds` of the time per iteration of `iters` calls of `f`.
fn per_call(rounds: usize, iters: u32, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let s = Instant::now();
            for _ in 0..iters {
                f();
            }
            s.elapsed() / iters
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn main() {
    let pkg: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tests/fixtures/tiny"));

    let m = Metrics::default();
    let record = per_call(21, 200_000, || {
        let r: atrank::Result<u64> = m.observe(Entry::Score, || Ok(black_box(1)));
        black_box(r).ok();
    });
    let shared = Arc::new(Metrics::default());
    let contended = {
        let other = Arc::clone(&shared);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let _: atrank::Result<()> = other.observe(Entry::Score, || Ok(()));
            }
        });
        let d = per_call(21, 200_000, || {
            let r: atrank::Result<u64> = shared.observe(Entry::Score, || Ok(black_box(1)));
            black_box(r).ok();
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t.join().unwrap();
        d
    };

    let model = Model::load(&pkg, Backend::Ort).expect("load the package on ONNX Runtime");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pkg.join("golden.json")).unwrap()).unwrap();
    let req = &golden["requests"][0];
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let raw: Vec<(String, Option<String>, Option<String>, i64)> = req["behaviors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                s(&b["item"]).or_else(|| s(&b["id"])).unwrap(),
                s(&b["category"]),
                s(&b["action"]),
                b["timestamp"].as_i64().unwrap(),
            )
        })
        .collect();
    let behaviors: Vec<Behavior<'_>> = raw
        .iter()
        .map(|(i, c, a, t)| Behavior::item(i, c.as_deref(), a.as_deref(), *t))
        .collect();
    let candidates: Vec<&str> = req["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let request = Request {
        behaviors: &behaviors,
        candidates: &candidates,
        request_time: req["request_time"].as_i64().unwrap(),
    };
    let score = per_call(21, 200, || {
        black_box(model.score(black_box(&request)).unwrap());
    });
    let calls = model.stats().entry(Entry::Score).calls;

    println!(
        "package {}, ONNX Runtime, 1 intra-op thread; {} behaviors, {} candidates; medians of 21 rounds\n",
        pkg.display(),
        behaviors.len(),
        candidates.len()
    );
    println!("| measurement | per call | share of Model::score |\n|---|---|---|");
    println!(
        "| Model::score (recorded; {calls} calls counted) | {:.1} us | 100 % |",
        ns(score) / 1e3
    );
    println!(
        "| recording one call (Instant pair + 3 relaxed atomics) | {:.1} ns | {:.3} % |",
        ns(record),
        100.0 * ns(record) / ns(score)
    );
    println!(
        "| recording, another thread recording into the same counters | {:.1} ns | {:.3} % |",
        ns(contended),
        100.0 * ns(contended) / ns(score)
    );
}
