//! One model shared by many threads gives the sequential results; a handle swaps models under
//! load with zero failed requests, and a failed load leaves the old model serving.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use atrank::{Backend, LoadOptions, Model, ModelHandle};
use common::{packages, read_golden, Golden};

fn score_all(model: &Model, golden: &Golden) -> Vec<Vec<f32>> {
    golden
        .requests
        .iter()
        .map(|req| common::score_golden(model, req))
        .collect()
}

fn concurrent_equals_sequential(backend: Backend, sessions: usize) {
    let pkg = &packages()[0];
    let golden = read_golden(pkg);
    let opts = LoadOptions {
        sessions,
        ..LoadOptions::new(backend)
    };
    let model = Arc::new(Model::load_with(pkg, &opts).unwrap());
    // The reference: one single-session model, one call at a time.
    let sequential = score_all(&Model::load(pkg, backend).unwrap(), &golden);
    let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| score_all(&model, &golden)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, r) in results.iter().enumerate() {
        assert_eq!(
            r, &sequential,
            "{backend} thread {t} differs from the sequential scores"
        );
    }
}

#[test]
fn eight_threads_on_one_tract_model_score_as_one() {
    concurrent_equals_sequential(Backend::Tract, 1);
}

#[test]
fn eight_threads_on_one_ort_model_score_as_one() {
    let Some(lib) = common::ort_library() else {
        return;
    };
    atrank::backend::ort::init(Some(&lib)).unwrap();
    concurrent_equals_sequential(Backend::Ort, 1);
}

#[test]
fn eight_threads_on_a_pool_of_three_ort_sessions_score_as_one() {
    let Some(lib) = common::ort_library() else {
        return;
    };
    atrank::backend::ort::init(Some(&lib)).unwrap();
    concurrent_equals_sequential(Backend::Ort, 3);
}

#[test]
fn hot_swap_under_load_drops_no_request_and_a_failed_load_keeps_the_old_model() {
    let good = &packages()[0];
    let golden = read_golden(good);
    let opts = LoadOptions::new(Backend::Tract);
    let handle = ModelHandle::load(good, &opts).unwrap();
    let broken = std::env::temp_dir().join(format!("atrank-broken-{}", std::process::id()));
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("spec.json"), "{ not json").unwrap();

    let stop = AtomicBool::new(false);
    let served = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    for req in &golden.requests {
                        let r = common::with_request(
                            &req.behaviors,
                            &req.candidates,
                            req.request_time,
                            |r| handle.score(r),
                        );
                        match r {
                            Ok(scores) if scores.len() == req.scores.len() => {
                                served.fetch_add(1, Ordering::SeqCst)
                            }
                            _ => failed.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                }
            });
        }
        let mut swaps = 0;
        for round in 0..6 {
            if round % 2 == 0 {
                let e = handle.reload(&broken, &opts).unwrap_err();
                assert_eq!(e.code(), atrank::ErrorCode::InvalidPackage, "{e}");
            } else {
                handle.reload(good, &opts).unwrap();
                swaps += 1;
            }
        }
        stop.store(true, Ordering::SeqCst);
        assert_eq!(handle.generation(), 1 + swaps);
    });
    std::fs::remove_dir_all(&broken).unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during swaps"
    );
    assert!(served.load(Ordering::SeqCst) > 0);
    // The handle still serves the trainer's scores after all that.
    let model = handle.current().unwrap();
    let after = score_all(&model, &golden);
    for (req, got) in golden.requests.iter().zip(after) {
        // runtime vs trainer: the request's derived 2 D U M (docs/tolerances.md)
        let tol = common::request_tolerance(&golden, req);
        for (g, w) in got.iter().zip(&req.scores) {
            assert!(
                (f64::from(*g) - f64::from(*w)).abs() <= tol,
                "{}: {g} vs {w}",
                req.name
            );
        }
    }
}

#[test]
fn a_snapshot_pairs_each_model_with_its_own_generation_during_reloads() {
    // Reloads alternate between the one-group fixture (odd generations) and the multigroup one
    // (even generations); readers check that every snapshot's model matches its generation.
    let pkgs = packages();
    let (one, two) = (&pkgs[0], &pkgs[1]);
    let groups_of =
        |p: &std::path::Path| Model::load(p, Backend::Tract).unwrap().spec().groups.len();
    let (g1, g2) = (groups_of(one), groups_of(two));
    assert_ne!(
        g1, g2,
        "the two fixtures must be told apart by their group counts"
    );
    let opts = LoadOptions::new(Backend::Tract);
    let handle = ModelHandle::load(one, &opts).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let checked = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (model, generation) = handle.snapshot().unwrap();
                    let want = if generation % 2 == 1 { g1 } else { g2 };
                    assert_eq!(model.spec().groups.len(), want, "generation {generation}");
                    checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        for k in 0..6 {
            let next = if k % 2 == 0 { two } else { one };
            handle.reload(next, &opts).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(handle.generation(), 7);
    assert!(checked.load(std::sync::atomic::Ordering::Relaxed) > 0);
}
