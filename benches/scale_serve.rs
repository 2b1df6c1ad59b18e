//! The serving half of `benches/scale.py`: loads one package in this process, measures it and
//! prints one JSON object. Run by the driver, not by hand (it needs the release build:
//! `cargo bench --bench scale_serve --no-run`), but it can be:
//!
//!     target/release/deps/scale_serve-<hash> --package PKG --backend ort|tract \
//!         [--sessions 1] [--threads 16] [--hold] [--no-lift]
//!
//! `--no-lift`: hand the tables to the engine (`LoadOptions::lift_tables = false`), for
//! comparison.
//!
//! Reports (memory from `/proc/self/smaps_rollup`, in KiB):
//! - `load_ms`: `Model::load_with` wall time;
//! - `after_load`: Rss, Pss, anonymous and file-backed resident memory after the load;
//! - `latency_ms`: median of one user (history 50) with N = 100 and N = 1000 candidates, one
//!   caller, 1 intra-op thread, drawn from the package's own catalog;
//! - `prepare_ms`: the same requests' preprocessing alone (`Model::prepare`: look-ups and
//!   tensors, no graph run);
//! - `after_threads`: memory after `--threads` callers each scored requests of N = 100 at once
//!   (with `--sessions` ONNX Runtime sessions);
//! - `touched_pages`: how much of the table file the calls brought in.
//!
//! `--hold`: after printing, waits until stdin closes, so that the driver can read this
//! process's `smaps_rollup` while a second process serves the same package.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use atrank::{Backend, Behavior, LoadOptions, Model, Request};

/// `Key: value kB` lines of /proc/self/smaps_rollup (KiB).
fn smaps() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some((k.trim().to_owned(), v))
        })
        .collect()
}

fn memory() -> String {
    let m = smaps();
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    format!(
        "{{\"rss_kib\": {}, \"pss_kib\": {}, \"anon_kib\": {}, \"file_kib\": {}}}",
        g("Rss"),
        g("Pss"),
        g("Anonymous"),
        g("Rss").saturating_sub(g("Anonymous")),
    )
}

#[path = "common/mod.rs"]
mod common;
use common::{median, Mix};

struct Args {
    package: PathBuf,
    backend: Backend,
    sessions: usize,
    threads: usize,
    hold: bool,
    lift: bool,
}

fn args() -> Args {
    let mut a = Args {
        package: PathBuf::new(),
        backend: Backend::Ort,
        sessions: 1,
        threads: 16,
        hold: false,
        lift: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--package" => a.package = it.next().expect("--package PATH").into(),
            "--backend" => {
                a.backend = match it.next().as_deref() {
                    Some("ort") => Backend::Ort,
                    Some("tract") => Backend::Tract,
                    other => panic!("--backend ort|tract, not {other:?}"),
                }
            }
            "--sessions" => a.sessions = it.next().and_then(|v| v.parse().ok()).expect("N"),
            "--threads" => a.threads = it.next().and_then(|v| v.parse().ok()).expect("N"),
            "--hold" => a.hold = true,
            "--no-lift" => a.lift = false,
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown argument {other:?}"),
        }
    }
    assert!(
        !a.package.as_os_str().is_empty(),
        "--package PATH is required"
    );
    a
}

fn main() {
    let a = args();
    let mut options = LoadOptions::new(a.backend);
    options.sessions = a.sessions;
    options.lift_tables = a.lift;
    let t = Instant::now();
    let model = Arc::new(Model::load_with(&a.package, &options).expect("load the package"));
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let after_load = memory();

    let spec = model.spec().clone();
    let keys = common::catalog_keys(&spec, &a.package);
    let action = spec.actions.first().cloned();
    let t0 = 1_700_000_000i64;
    let request = |mix: &mut Mix, n: usize| -> (Vec<String>, Vec<String>) {
        let hist: Vec<String> = (0..50)
            .map(|_| keys.key(mix.next(keys.len())).unwrap().to_owned())
            .collect();
        let cands: Vec<String> = (0..n)
            .map(|_| keys.key(mix.next(keys.len())).unwrap().to_owned())
            .collect();
        (hist, cands)
    };
    let score = |model: &Model, hist: &[String], cands: &[String]| {
        let behaviors: Vec<Behavior<'_>> = hist
            .iter()
            .enumerate()
            .map(|(k, id)| Behavior::item(id, None, action.as_deref(), t0 - 600 * k as i64))
            .collect();
        let cands: Vec<&str> = cands.iter().map(String::as_str).collect();
        let scores = model
            .score(&Request {
                behaviors: &behaviors,
                candidates: &cands,
                request_time: t0,
            })
            .expect("score");
        assert_eq!(scores.len(), cands.len());
        assert!(scores.iter().all(|s| s.is_finite()));
    };

    let mut mix = Mix(7);
    let mut latency = Vec::new();
    let mut prepare = Vec::new();
    for n in [100usize, 1000] {
        let reqs: Vec<_> = (0..8).map(|_| request(&mut mix, n)).collect();
        let mut k = 0;
        let reps = if n == 100 { 200 } else { 40 };
        let d = median(
            || {
                let (h, c) = &reqs[k % reqs.len()];
                k += 1;
                score(&model, h, c);
            },
            reps,
        );
        latency.push(format!("\"{n}\": {:.4}", d.as_secs_f64() * 1e3));
        // the preprocessing alone (vocabulary and catalog look-ups, tensors), same requests
        let mut k = 0;
        let d = median(
            || {
                let (h, c) = &reqs[k % reqs.len()];
                k += 1;
                let behaviors: Vec<Behavior<'_>> = h
                    .iter()
                    .enumerate()
                    .map(|(j, id)| Behavior::item(id, None, action.as_deref(), t0 - 600 * j as i64))
                    .collect();
                let cands: Vec<&str> = c.iter().map(String::as_str).collect();
                let req = Request {
                    behaviors: &behaviors,
                    candidates: &cands,
                    request_time: t0,
                };
                drop(model.prepare(&[req]).expect("prepare"));
            },
            reps,
        );
        prepare.push(format!("\"{n}\": {:.4}", d.as_secs_f64() * 1e3));
    }

    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..a.threads {
            let model = &model;
            let score = &score;
            let request = &request;
            s.spawn(move || {
                let mut mix = Mix(1000 + th as u64);
                for _ in 0..20 {
                    let (h, c) = request(&mut mix, 100);
                    score(model, &h, &c);
                }
            });
        }
    });
    let threads_s = t.elapsed().as_secs_f64();
    let after_threads = memory();
    println!(
        "{{\"backend\": \"{:?}\", \"serving\": \"{:?}\", \"sessions\": {}, \"threads\": {}, \"lift\": {}, \
         \"load_ms\": {load_ms:.1}, \"after_load\": {after_load}, \"latency_ms\": {{{}}}, \
         \"prepare_ms\": {{{}}}, \
         \"threads_s\": {threads_s:.2}, \"after_threads\": {after_threads}}}",
        a.backend,
        model.serving(),
        a.sessions,
        a.threads,
        a.lift,
        latency.join(", "),
        prepare.join(", ")
    );
    std::io::stdout().flush().ok();
    if a.hold {
        println!("ready");
        std::io::stdout().flush().ok();
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink).ok();
    }
}
