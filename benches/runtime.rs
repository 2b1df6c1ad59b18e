//! Runtime benchmarks, reported as ratios measured in one run (these machines are shared and
//! noisy). Regenerates the figures in docs/benchmarks.md:
//!
//!     ATRANK_ORT_LIB=.cache/onnxruntime-1.31.1/lib/libonnxruntime.so.1.31.1 \
//!         cargo bench --bench runtime -- build/ml100k/package
//!
//! (the package from `bash scripts/main.sh`). Medians over repeated calls, 1 intra-op thread
//! unless stated. Measures: encode-once (one user, N candidates: B = 1) against scoring each
//! (user, candidate) pair as its own row (B = N, history repeated), through the same graph;
//! end-to-end raw-request scoring against ONNX Runtime's run on already-prepared tensors;
//! tract (shape-specialised plans, and the symbolic plan alone) against ONNX Runtime; 1 against 2 intra-op threads; resident memory of one model
//! scored by 1 and by 16 threads; resident memory of 8 shape-specialised tract plans.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atrank::backend::{load_graph, Feed, LoadOptions};
use atrank::preprocess::Prepared;
use atrank::{Backend, Behavior, Model, Request};

#[path = "common/mod.rs"]
mod common;
use common::median;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let pkg: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("build/ml100k/package"));
    let model = Model::load(&pkg, Backend::Ort).expect("load the package on ONNX Runtime");
    let spec = model.spec().clone();
    // The target group's ids: the keys of its id table's atv vocabulary.
    let id_table = &spec.tables[spec.target_group().features[0].table];
    let vocab = atrank::vocab::Atv::open(
        std::fs::read(pkg.join(&id_table.vocab)).unwrap(),
        &id_table.vocab,
        Some(id_table.size),
    )
    .unwrap();
    let items: Vec<String> = (0..vocab.len())
        .map(|k| vocab.key(k).unwrap().to_owned())
        .collect();
    let t0 = 900_000_000i64;
    let history: Vec<Behavior<'_>> = (0..50)
        .map(|k| {
            Behavior::item(
                &items[(k * 7) % items.len()],
                None,
                Some("like"),
                t0 - 3600 * k as i64,
            )
        })
        .collect();
    println!(
        "package {}; history 50; medians; 1 intra-op thread unless stated\n",
        pkg.display()
    );
    println!("| measurement | N = 100 | N = 1000 |\n|---|---|---|");
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let push = |name: &str, v: String, rows: &mut Vec<(String, Vec<String>)>| match rows
        .iter_mut()
        .find(|r| r.0 == name)
    {
        Some(r) => r.1.push(v),
        None => rows.push((name.to_owned(), vec![v])),
    };
    let opts = LoadOptions::new(Backend::Ort);
    let graph_path = pkg.join(&spec.graph_file);
    let graph_bytes = bytes::Bytes::from(std::fs::read(&graph_path).unwrap());
    // The graph's external data (tables.bin), as the runtime hands it over.
    let external: Vec<atrank::backend::ExternalFile> = spec
        .external_data
        .iter()
        .map(|name| atrank::backend::ExternalFile {
            name: name.clone(),
            data: bytes::Bytes::from(std::fs::read(pkg.join(name)).unwrap()),
        })
        .collect();
    let full = load_graph(
        &opts,
        &graph_path,
        &graph_bytes,
        &external,
        &spec.inputs,
        std::slice::from_ref(&spec.output),
    )
    .unwrap();
    let mut opts2 = LoadOptions::new(Backend::Ort);
    opts2.intra_threads = 2;
    let model2 = Model::load_with(&pkg, &opts2).unwrap();
    let tract = Model::load(&pkg, Backend::Tract).unwrap();
    // tract with only the plan with symbolic dimensions (no shape-specialised plans, inputs
    // padded to the request's own sizes): how tract ran before the plan cache.
    let tract_symbolic = Model::load_with(
        &pkg,
        &LoadOptions {
            tract_plans: 0,
            ..LoadOptions::new(Backend::Tract)
        },
    )
    .unwrap();
    for n in [100usize, 1000] {
        let cands: Vec<&str> = (0..n)
            .map(|k| items[(k * 13 + 5) % items.len()].as_str())
            .collect();
        let req = Request {
            behaviors: &history,
            candidates: &cands,
            request_time: t0,
        };
        let reps = if n == 100 { 200 } else { 40 };
        let e2e = median(|| drop(model.score(&req).unwrap()), reps);
        let prepared = model.prepare(&[req]).unwrap();
        let feeds = |p: &Prepared| -> Vec<(String, Vec<usize>, Vec<i64>)> {
            p.tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
                .collect()
        };
        let owned = feeds(&prepared);
        let run_prepared = |owned: &Vec<(String, Vec<usize>, Vec<i64>)>| {
            let f: Vec<Feed<'_>> = owned.iter().map(|(n, s, d)| Feed::I64(n, s, d)).collect();
            drop(full.graph.run(&f, &[spec.output.as_str()]).unwrap());
        };
        let prepared_only = median(|| run_prepared(&owned), reps);
        // Naive pairs: one row per (user, candidate), history repeated N times, 1 candidate each.
        let singles: Vec<[&str; 1]> = cands.iter().map(|c| [*c]).collect();
        let pair_reqs: Vec<Request<'_>> = singles
            .iter()
            .map(|c| Request {
                behaviors: &history,
                candidates: c,
                request_time: t0,
            })
            .collect();
        let pairs = model.prepare(&pair_reqs).unwrap();
        let pair_owned = feeds(&pairs);
        let naive = median(|| run_prepared(&pair_owned), if n == 100 { 20 } else { 5 });
        let two = median(|| drop(model2.score(&req).unwrap()), reps);
        let tr = median(
            || drop(tract.score(&req).unwrap()),
            if n == 100 { 50 } else { 10 },
        );
        push(
            "ORT, naive pair rows (B = N), prepared tensors",
            format!("{:.2} ms", ms(naive)),
            &mut rows,
        );
        push(
            "ORT, encode-once (B = 1), prepared tensors",
            format!("{:.3} ms", ms(prepared_only)),
            &mut rows,
        );
        push(
            "**encode-once speed-up over naive pairs**",
            format!("**{:.0}x**", ms(naive) / ms(prepared_only)),
            &mut rows,
        );
        push(
            "ORT, end to end from raw behaviors (Rust API)",
            format!("{:.3} ms", ms(e2e)),
            &mut rows,
        );
        push(
            "preprocessing + call overhead, share of the request",
            format!("{:.1}%", 100.0 * (ms(e2e) - ms(prepared_only)) / ms(e2e)),
            &mut rows,
        );
        push(
            "ORT, 2 intra-op threads, end to end",
            format!("{:.3} ms ({:.2}x of 1 thread)", ms(two), ms(e2e) / ms(two)),
            &mut rows,
        );
        let tr_symbolic = median(
            || drop(tract_symbolic.score(&req).unwrap()),
            if n == 100 { 50 } else { 10 },
        );
        push(
            "tract, end to end (shape-specialised plan, already built)",
            format!("{:.3} ms ({:.2}x ORT's time)", ms(tr), ms(tr) / ms(e2e)),
            &mut rows,
        );
        // A new shape's first call builds its plan: time that call on fresh models.
        let mut builds: Vec<Duration> = (0..3)
            .map(|_| {
                let fresh = Model::load(&pkg, Backend::Tract).unwrap();
                let s = Instant::now();
                drop(fresh.score(&req).unwrap());
                s.elapsed()
            })
            .collect();
        builds.sort();
        push(
            "tract, a new shape's first call (builds its plan, then runs it)",
            format!("{:.1} ms", ms(builds[1])),
            &mut rows,
        );
        push(
            "tract, end to end, symbolic plan only (`tract_plans = 0`)",
            format!(
                "{:.3} ms ({:.2}x ORT's time)",
                ms(tr_symbolic),
                ms(tr_symbolic) / ms(e2e)
            ),
            &mut rows,
        );
        push(
            "candidate scores/s, ORT 1 thread, end to end",
            format!("{:.0}", n as f64 / e2e.as_secs_f64()),
            &mut rows,
        );
    }
    for (name, vals) in &rows {
        println!("| {name} | {} |", vals.join(" | "));
    }
    // Two callers on one ORT model: 1 session (calls serialised) against a pool of 2.
    let cands100: Vec<&str> = (0..100)
        .map(|k| items[(k * 13 + 5) % items.len()].as_str())
        .collect();
    let calls_per_thread = 300;
    let throughput = |m: &Model, threads: usize| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..calls_per_thread {
                        let r = Request {
                            behaviors: &history,
                            candidates: &cands100,
                            request_time: t0,
                        };
                        drop(m.score(&r).unwrap());
                    }
                });
            }
        });
        (threads * calls_per_thread) as f64 / start.elapsed().as_secs_f64()
    };
    let pool = Model::load_with(
        &pkg,
        &LoadOptions {
            sessions: 2,
            ..LoadOptions::new(Backend::Ort)
        },
    )
    .unwrap();
    let one_thread = throughput(&model, 1);
    let one_session = throughput(&model, 2);
    let two_sessions = throughput(&pool, 2);
    println!(
        "\nORT requests/s at N = 100, one model: 1 caller {one_thread:.0}; 2 callers on 1 session \
         {one_session:.0} ({:.2}x); 2 callers on a pool of 2 sessions {two_sessions:.0} ({:.2}x)",
        one_session / one_thread,
        two_sessions / one_thread
    );
    drop(pool);

    // Resident memory: one model shared by 1 thread, then by 16 threads.
    let shared = Arc::new(model);
    let cands: Vec<&str> = (0..1000)
        .map(|k| items[(k * 13 + 5) % items.len()].as_str())
        .collect();
    let score = |m: &Model| {
        for _ in 0..5 {
            drop(
                m.score(&Request {
                    behaviors: &history,
                    candidates: &cands,
                    request_time: t0,
                })
                .unwrap(),
            );
        }
    };
    score(&shared);
    let one = rss_kib();
    std::thread::scope(|s| {
        for _ in 0..16 {
            let m = Arc::clone(&shared);
            s.spawn(move || score(&m));
        }
    });
    let sixteen = rss_kib();
    println!(
        "\nresident memory (ORT model, N = 1000): 1 thread {:.1} MiB, after 16 threads {:.1} MiB (+{:.1}%)",
        one as f64 / 1024.0,
        sixteen as f64 / 1024.0,
        100.0 * (sixteen as f64 - one as f64) / one as f64
    );
    // tract: resident memory of 8 shape-specialised plans (N = 1, 2, 4 .. 128, each shape
    // scored twice so that its plan is built).
    let tract_mem = Model::load(&pkg, Backend::Tract).unwrap();
    let before = rss_kib();
    for n in (0..8).map(|k| 1usize << k) {
        for _ in 0..2 {
            drop(
                tract_mem
                    .score(&Request {
                        behaviors: &history,
                        candidates: &cands[..n],
                        request_time: t0,
                    })
                    .unwrap(),
            );
        }
    }
    let after = rss_kib();
    println!(
        "tract, 8 shape-specialised plans ({} built): +{:.1} MiB resident",
        tract_mem.plan_cache_stats().plans,
        (after as f64 - before as f64) / 1024.0
    );
}
