//! `Model::stats` and `Model::info` through the Rust API: the counters agree with the calls made
//! here (per entry point, failures by code, the histogram, the cache, tract plans, ORT sessions),
//! and the info agrees with the package as read here (spec.json, the keys in each atv
//! vocabulary's header, the graph's SHA-256 computed by this test from the file).

mod common;

use std::sync::Arc;

use atrank::{Backend, Entry, ErrorCode, LoadOptions, Model, ModelHandle};
use common::{ort_library, packages, read_golden, score_golden, with_request};
use sha2::{Digest, Sha256};

fn options(backend: Backend) -> Option<LoadOptions> {
    let mut o = LoadOptions::new(backend);
    if backend == Backend::Ort {
        o.ort_library = Some(ort_library()?);
        o.sessions = 2;
    }
    Some(o)
}

fn check_counts(backend: Backend) {
    let Some(opts) = options(backend) else { return };
    // Every package, and one without the split graphs (score_cached runs the full graph).
    let nosplit = common::package_without_split(&packages()[0], &format!("nosplit-{backend}"));
    let mut all = packages();
    all.push(nosplit.to_path_buf());
    for pkg in all {
        let split = common::has_split(&pkg);
        let golden = read_golden(&pkg);
        let model = Arc::new(Model::load_with(&pkg, &opts).unwrap());
        assert_eq!(
            model.stats().total().calls,
            0,
            "a fresh model counts nothing"
        );

        let n = 2 * golden.requests.len();
        for i in 0..n {
            score_golden(&model, &golden.requests[i % golden.requests.len()]);
        }
        let req = &golden.requests[0];
        let max = model.max_candidates();
        let too_many: Vec<String> = vec![req.candidates[0].clone(); max + 1];
        let err = with_request(&req.behaviors, &too_many, req.request_time, |r| {
            model.score(r)
        })
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        for _ in 0..2 {
            with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
                model.score_cached("u1", r)
            })
            .unwrap();
        }
        with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
            model.score_batch(&[*r, *r])
        })
        .unwrap();
        // Threads lose no count.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&model);
                let g = read_golden(&pkg);
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        score_golden(&m, &g.requests[0]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }

        let s = model.stats();
        let what = format!("{} on {backend}", pkg.display());
        let score = s.entry(Entry::Score);
        let ok = (n + 40) as u64;
        assert_eq!(score.calls, ok + 1, "{what}: score calls");
        assert_eq!(score.succeeded(), ok, "{what}: histogram count");
        assert_eq!(score.failures_with(ErrorCode::InvalidArgument), 1, "{what}");
        assert_eq!(score.failed(), 1, "{what}");
        assert!(score.latency_sum_ns > 0, "{what}");
        assert!(score.latency_quantile(0.99) >= score.latency_quantile(0.5));
        assert_eq!(s.entry(Entry::ScoreCached).calls, 2, "{what}");
        assert_eq!(s.entry(Entry::ScoreBatch).calls, 1, "{what}");
        assert_eq!(s.total().calls, ok + 1 + 2 + 1, "{what}");
        let (hits, misses, entries) = if split { (1, 1, 1) } else { (0, 0, 0) };
        assert_eq!(
            (s.cache.hits, s.cache.misses, s.cache.entries),
            (hits, misses, entries),
            "{what}: cache"
        );
        // Graph runs: one per successful score / batch; score_cached: the full graph twice, or
        // the encoder once and the scorer twice.
        let runs = ok + 1 + if split { 3 } else { 2 };
        match backend {
            Backend::Tract => {
                assert_eq!(
                    s.plans.symbolic_runs + s.plans.concrete_runs,
                    runs,
                    "{what}: tract runs"
                );
                assert!(s.plans.plans_built >= 1, "{what}: no plan built");
                assert_eq!((s.ort_sessions, s.ort_sessions_busy), (0, 0), "{what}");
            }
            Backend::Ort => {
                let graphs = if split { 3 } else { 1 };
                assert_eq!(s.ort_sessions, 2 * graphs, "{what}: sessions");
                assert_eq!(s.ort_sessions_busy, 0, "{what}: idle sessions busy");
                assert_eq!(s.plans.symbolic_runs + s.plans.concrete_runs, 0, "{what}");
            }
        }
    }
}

#[test]
fn counts_on_tract() {
    check_counts(Backend::Tract);
}

#[test]
fn counts_on_ort() {
    check_counts(Backend::Ort);
}

#[test]
fn a_reloaded_model_starts_from_zero() {
    let pkg = &packages()[0];
    let golden = read_golden(pkg);
    let handle = ModelHandle::load(pkg, &LoadOptions::new(Backend::Tract)).unwrap();
    score_twice(&handle, &golden);
    let (before, g1) = handle.snapshot().unwrap();
    assert_eq!((before.stats().entry(Entry::Score).calls, g1), (2, 1));
    handle
        .reload(pkg, &LoadOptions::new(Backend::Tract))
        .unwrap();
    let (after, g2) = handle.snapshot().unwrap();
    assert_eq!((after.stats().entry(Entry::Score).calls, g2), (0, 2));
    // The old model keeps its own counters.
    assert_eq!(before.stats().entry(Entry::Score).calls, 2);
}

fn score_twice(handle: &ModelHandle, golden: &common::Golden) {
    let r = &golden.requests[0];
    for _ in 0..2 {
        with_request(&r.behaviors, &r.candidates, r.request_time, |q| {
            handle.score(q)
        })
        .unwrap();
    }
}

#[test]
fn info_matches_the_package() {
    for pkg in packages() {
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(pkg.join("spec.json")).unwrap()).unwrap();
        let model = Model::load(&pkg, Backend::Tract).unwrap();
        let info = model.info();
        let what = pkg.display().to_string();
        assert_eq!(info.name, spec["name"].as_str().unwrap_or(""), "{what}");
        assert_eq!(
            Some(info.spec_version as u64),
            spec["spec_version"].as_u64()
        );
        assert_eq!(
            info.created_by.as_deref(),
            spec["created_by"].as_str(),
            "{what}"
        );
        // input_mapping: the spec's object (compared as JSON), None when it has none.
        let mapping = spec.get("input_mapping").filter(|m| !m.is_null());
        let got: Option<serde_json::Value> = info
            .input_mapping
            .as_deref()
            .map(|m| serde_json::from_str(m).unwrap());
        assert_eq!(got.as_ref(), mapping, "{what}");
        if let Some(m) = mapping {
            // Packages that describe their inputs state the tie order for equal timestamps.
            assert!(
                m["order"]
                    .as_str()
                    .unwrap_or("")
                    .contains("equal timestamps"),
                "{what}: {m}"
            );
        }
        let graph = std::fs::read(pkg.join(spec["graph"]["file"].as_str().unwrap())).unwrap();
        let digest: String = Sha256::digest(&graph)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(info.graph_sha256, digest, "{what}");
        assert_eq!(
            Some(info.max_candidates as u64),
            spec["limits"]["max_candidates"].as_u64()
        );
        assert_eq!(
            Some(info.max_behaviors as u64),
            spec["limits"]["max_behaviors"].as_u64()
        );
        let groups = spec["groups"].as_array().unwrap();
        let want: Vec<(String, usize)> = groups
            .iter()
            .map(|g| {
                (
                    g["name"].as_str().unwrap().to_owned(),
                    g["max_history"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(info.max_history, want, "{what}");
        assert!(!info.vocab_sizes.is_empty());
        let tables = spec["tables"].as_object().unwrap();
        assert_eq!(info.vocab_sizes.len(), tables.len(), "{what}");
        for (table, size) in &info.vocab_sizes {
            let t = &tables[table];
            let file = t["vocab"].as_str().unwrap();
            assert_eq!(Some(*size as u64), t["size"].as_u64(), "{what}: {table}");
            let n = common::atv_len(&pkg.join(file));
            assert_eq!(*size as u64, n, "{what}: {table} ({file})");
        }
    }
}
