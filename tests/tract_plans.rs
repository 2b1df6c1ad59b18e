//! tract's shape-specialised plans and the shape bucketing that feeds them: the trainer's
//! scores, equality with the plain symbolic plan on unpadded inputs over many (history length,
//! candidate count) shapes, the split graphs, 8 threads, and the cache's bounds. Each test
//! checks the plan counters, so that it fails if the specialised plans are never used.

mod common;

use std::sync::Arc;

use atrank::backend::PlanStats;
use atrank::{Backend, LoadOptions, Model, Request};
use common::{
    any_request_tolerance, borrow_behaviors, check_golden, feature_pairs, packages, read_golden,
    GoldenRequest,
};

fn tract(pkg: &std::path::Path, plans: usize) -> Model {
    let opts = LoadOptions {
        tract_plans: plans,
        ..LoadOptions::new(Backend::Tract)
    };
    Model::load_with(pkg, &opts).unwrap_or_else(|e| panic!("{}: {e}", pkg.display()))
}

/// A request shape: the golden request's `history` most recent behaviors, `candidates`
/// candidates (its own, cycled, with an unknown id mixed in).
#[derive(Debug, Clone, Copy)]
struct Shape {
    request: usize,
    history: usize,
    candidates: usize,
}

fn shapes(golden: &[GoldenRequest]) -> Vec<Shape> {
    let mut out = Vec::new();
    for (k, (history, candidates)) in [
        (1, 1),
        (2, 3),
        (3, 11),
        (5, 2),
        (7, 17),
        (9, 5),
        (4, 9),
        (12, 33),
        (6, 14),
        (30, 40),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(Shape {
            request: k % golden.len(),
            history,
            candidates,
        });
    }
    out
}

/// Scores `shape` with `f`, building the request from the golden request's parts.
fn with_shape<R>(golden: &[GoldenRequest], shape: Shape, f: impl FnOnce(&Request<'_>) -> R) -> R {
    let req = &golden[shape.request];
    let features = feature_pairs(&req.behaviors);
    let all = borrow_behaviors(&req.behaviors, &features);
    let mut behaviors = all.clone();
    behaviors.sort_by_key(|b| b.timestamp);
    let behaviors = &behaviors[behaviors.len().saturating_sub(shape.history)..];
    let candidates: Vec<&str> = (0..shape.candidates)
        .map(|i| match i % 7 {
            6 => "no-such-object",
            _ => req.candidates[i % req.candidates.len()].as_str(),
        })
        .collect();
    f(&Request {
        behaviors,
        candidates: &candidates,
        request_time: req.request_time,
    })
}

/// `tol`: the package's `bound_any_request` (2 D U M_max, docs/tolerances.md): the shapes are
/// built from golden requests but are not golden requests themselves.
fn assert_close(label: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{label}: lengths");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{label} cand {k}: {g}");
        assert!(
            (f64::from(*g) - f64::from(*w)).abs() <= tol,
            "{label} cand {k}: {g} vs symbolic {w}"
        );
    }
}

#[test]
fn plans_give_the_trainers_scores() {
    for pkg in packages() {
        let model = tract(&pkg, 32);
        // Round 1 sees each shape first (symbolic plan), then builds plans for shapes that
        // repeat; round 2 runs the golden set again, now on specialised plans.
        for round in 0..2 {
            check_golden(&pkg, &format!("tract with plans, round {round}"), |req| {
                common::score_golden(&model, req)
            });
        }
        let s = model.plan_cache_stats();
        let n = read_golden(&pkg).requests.len() as u64;
        assert_eq!(s.symbolic_runs + s.concrete_runs, 2 * n, "{s:?}");
        assert!(s.plans_built > 0 && s.plans > 0, "{}: {s:?}", pkg.display());
        assert!(s.concrete_runs >= n, "{}: {s:?}", pkg.display());
        assert_eq!(s.build_failures, 0, "{s:?}");
    }
}

#[test]
fn bucketed_plans_equal_the_symbolic_plan_on_unpadded_inputs() {
    for pkg in packages() {
        let file = read_golden(&pkg);
        let tol = any_request_tolerance(&file);
        let golden = file.requests;
        let plans = tract(&pkg, 32);
        let symbolic = tract(&pkg, 0);
        let cases = shapes(&golden);
        for round in 0..3 {
            for &shape in &cases {
                let (got, want, padded, exact) = with_shape(&golden, shape, |r| {
                    (
                        plans.score(r).unwrap(),
                        symbolic.score(r).unwrap(),
                        plans.prepare(std::slice::from_ref(r)).unwrap(),
                        symbolic.prepare(std::slice::from_ref(r)).unwrap(),
                    )
                });
                let label = format!("{} round {round} {shape:?}", pkg.display());
                assert_close(&label, &got, &want, tol);
                assert_eq!(got.len(), shape.candidates, "{label}");
                // Only the plans model pads: candidates to the next power of two, histories
                // likewise (capped at the group's max_history, a cap above 16 rounded up to a
                // multiple of 16, which never exceeds the power of two).
                assert_eq!(exact.candidates, shape.candidates, "{label}");
                assert_eq!(
                    padded.candidates,
                    shape.candidates.next_power_of_two(),
                    "{label}"
                );
                let candidate_inputs = &plans.spec().candidate_inputs;
                for (p, e) in padded.tensors.iter().zip(&exact.tensors) {
                    assert_eq!(p.name, e.name);
                    if e.shape.len() == 2 && !candidate_inputs.iter().any(|(_, c)| *c == p.name) {
                        assert!(p.shape[1] >= e.shape[1], "{label} {}", p.name);
                        assert!(
                            p.shape[1] == e.shape[1]
                                || p.shape[1] <= e.shape[1].next_power_of_two(),
                            "{label} {}: {:?} vs {:?}",
                            p.name,
                            p.shape,
                            e.shape
                        );
                    }
                }
            }
        }
        // Batches of mixed shapes, twice.
        let requests: Vec<Shape> = cases.iter().copied().take(4).collect();
        for _ in 0..2 {
            let (got, want) = with_shapes(&golden, &requests, |rs| {
                (
                    plans.score_batch(rs).unwrap(),
                    symbolic.score_batch(rs).unwrap(),
                )
            });
            for (u, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{} batch user {u}", pkg.display()), g, w, tol);
            }
        }
        let s = plans.plan_cache_stats();
        assert!(s.concrete_runs > 0 && s.plans_built > 0, "{s:?}");
        assert_eq!(s.build_failures, 0, "{s:?}");
        let off = symbolic.plan_cache_stats();
        assert_eq!(
            (off.concrete_runs, off.plans_built, off.plans),
            (0, 0, 0),
            "{off:?}"
        );
        assert!(off.symbolic_runs > 0, "{off:?}");
    }
}

/// Like [`with_shape`] for several requests at once.
fn with_shapes<R>(
    golden: &[GoldenRequest],
    shapes: &[Shape],
    f: impl FnOnce(&[Request<'_>]) -> R,
) -> R {
    fn go<R>(
        golden: &[GoldenRequest],
        rest: &[Shape],
        done: &mut Vec<Request<'_>>,
        f: impl FnOnce(&[Request<'_>]) -> R,
    ) -> R {
        match rest.split_first() {
            None => f(done),
            Some((&first, rest)) => with_shape(golden, first, |r| {
                let mut more: Vec<Request<'_>> = done.clone();
                more.push(*r);
                go(golden, rest, &mut more, f)
            }),
        }
    }
    go(golden, shapes, &mut Vec::new(), f)
}

#[test]
fn split_graphs_use_plans_too() {
    let pkg = &packages()[1]; // the multigroup fixture, with the encoder/scorer pair
    let file = read_golden(pkg);
    let tol = any_request_tolerance(&file);
    let golden = file.requests;
    let plans = tract(pkg, 32);
    let symbolic = tract(pkg, 0);
    let cases = shapes(&golden);
    for round in 0..3 {
        for (k, &shape) in cases.iter().enumerate() {
            let before = plans.plan_cache_stats();
            // A new user key each round: the encoder runs every time.
            let key = format!("user-{round}-{k}");
            let (got, want) = with_shape(&golden, shape, |r| {
                (
                    plans.score_cached(&key, r).unwrap(),
                    symbolic.score(r).unwrap(),
                )
            });
            assert_close(
                &format!("score_cached round {round} {shape:?}"),
                &got,
                &want,
                tol,
            );
            let after = plans.plan_cache_stats();
            // Two graph runs (encoder and scorer), none on the full graph.
            assert_eq!(
                (after.symbolic_runs + after.concrete_runs)
                    - (before.symbolic_runs + before.concrete_runs),
                2
            );
            if round == 2 {
                assert_eq!(
                    after.concrete_runs - before.concrete_runs,
                    2,
                    "{shape:?}: the third sighting runs both split graphs on their plans"
                );
            }
        }
    }
    let s = plans.plan_cache_stats();
    assert_eq!(s.build_failures, 0, "{s:?}");
}

#[test]
fn eight_threads_share_the_plans() {
    for pkg in packages() {
        let file = read_golden(&pkg);
        let tol = any_request_tolerance(&file);
        let golden = file.requests;
        let cases = shapes(&golden);
        let symbolic = tract(&pkg, 0);
        let want: Vec<Vec<f32>> = cases
            .iter()
            .map(|&s| with_shape(&golden, s, |r| symbolic.score(r).unwrap()))
            .collect();
        let model = Arc::new(tract(&pkg, 32));
        std::thread::scope(|s| {
            for t in 0..8 {
                let (model, golden, cases, want) = (&model, &golden, &cases, &want);
                s.spawn(move || {
                    for round in 0..3 {
                        for (k, &shape) in cases.iter().enumerate().skip(t % 3) {
                            let got = with_shape(golden, shape, |r| model.score(r).unwrap());
                            assert_close(
                                &format!("thread {t} round {round} {shape:?}"),
                                &got,
                                &want[k],
                                tol,
                            );
                        }
                    }
                });
            }
        });
        let s = model.plan_cache_stats();
        assert!(s.concrete_runs > 0 && s.plans > 0, "{s:?}");
        assert!(s.plans <= 32, "{s:?}");
        assert_eq!(s.build_failures, 0, "{s:?}");
    }
}

#[test]
fn a_plan_is_built_on_the_first_sighting_reused_and_the_cache_stays_bounded() {
    let pkg = &packages()[0];
    let golden = read_golden(pkg).requests;
    let model = tract(pkg, 2);
    let delta = |a: PlanStats, b: PlanStats| {
        (
            b.symbolic_runs - a.symbolic_runs,
            b.concrete_runs - a.concrete_runs,
            b.plans_built - a.plans_built,
        )
    };
    let one = Shape {
        request: 0,
        history: 3,
        candidates: 5,
    };
    let run = |s: Shape| with_shape(&golden, s, |r| model.score(r).unwrap());
    let s0 = model.plan_cache_stats();
    let first = run(one);
    let s1 = model.plan_cache_stats();
    assert_eq!(delta(s0, s1), (0, 1, 1), "first sighting: built and run");
    let again = run(one);
    let s2 = model.plan_cache_stats();
    assert_eq!(delta(s1, s2), (0, 1, 0), "second sighting: the cached plan");
    // The same plan both times: the same scores, bit for bit.
    assert_eq!(first, again);
    // A different length in the same buckets (history 4 -> 4, 8 candidates -> 8): the same plan.
    run(Shape {
        history: 4,
        candidates: 8,
        ..one
    });
    let s3 = model.plan_cache_stats();
    assert_eq!(delta(s2, s3), (0, 1, 0), "same buckets: the cached plan");
    // Many shapes: never more than 2 plans held; an evicted shape's plan is rebuilt and gives
    // the same scores as before (results never depend on the cache's history).
    for candidates in [1, 2, 3, 9, 17, 33] {
        run(Shape { candidates, ..one });
    }
    let s4 = model.plan_cache_stats();
    assert_eq!(s4.plans, 2, "{s4:?}");
    assert!(s4.plans_built >= 7, "{s4:?}");
    assert_eq!(run(one), first, "rebuilt after eviction");
    assert_eq!(model.plan_cache_stats().plans_built, s4.plans_built + 1);
}
