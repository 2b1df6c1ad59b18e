//! What a reranker relies on beyond the scores themselves: `LoadOptions::exclude_seen` (off by
//! default) and the behaviour for an empty history, through the Rust API and the C ABI's
//! builder.

mod common;

use std::collections::HashSet;
use std::ffi::CString;

use atrank::ffi::{
    atrank_code, atrank_error_code, atrank_error_free, atrank_model_builder_build,
    atrank_model_builder_free, atrank_model_builder_new, atrank_model_builder_set_backend,
    atrank_model_builder_set_exclude_seen, atrank_model_free, atrank_model_score,
    ATRANK_BACKEND_TRACT,
};
use atrank::{Backend, Behavior, LoadOptions, Model, Request};
use common::{packages, read_golden, request_tolerance, with_request, GoldenBehavior};

fn load(package: &std::path::Path, exclude_seen: bool) -> Model {
    Model::load_with(
        package,
        &LoadOptions {
            exclude_seen,
            ..LoadOptions::new(Backend::Tract)
        },
    )
    .unwrap()
}

/// The target group's name, read from spec.json (not from the runtime under test).
fn target_group(package: &std::path::Path) -> String {
    common::read_spec(package)["target_group"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Ids of the behaviors that touch target-group objects: group absent or the target group.
fn touched(behaviors: &[GoldenBehavior], target: &str) -> HashSet<String> {
    behaviors
        .iter()
        .filter(|b| b.group.as_deref().is_none_or(|g| g == target))
        .map(|b| b.id.clone())
        .collect()
}

#[test]
fn exclude_seen_is_off_by_default() {
    assert!(!LoadOptions::new(Backend::Tract).exclude_seen);
    assert!(!LoadOptions::new(Backend::Ort).exclude_seen);
    assert!(!Model::load(&packages()[0], Backend::Tract)
        .unwrap()
        .excludes_seen());
}

/// Every golden request with target-group behaviors, its candidates extended by two ids from
/// its own history: with the option, exactly the touched candidates score -inf (in `score`,
/// `score_batch` and `score_cached`), and every other candidate keeps the score the model
/// gives without it, bit for bit (same backend, same shapes).
#[test]
fn exclude_seen_scores_exactly_the_touched_candidates_minus_infinity() {
    for package in packages() {
        let target = target_group(&package);
        let plain = load(&package, false);
        let excluding = load(&package, true);
        let golden = read_golden(&package);
        let mut checked = 0;
        for req in &golden.requests {
            let seen = touched(&req.behaviors, &target);
            if seen.is_empty() {
                continue;
            }
            let mut candidates = req.candidates.clone();
            let mut from_history: Vec<&String> = seen.iter().collect();
            from_history.sort();
            candidates.extend(from_history.into_iter().take(2).cloned());
            candidates.truncate(plain.max_candidates());
            let (want, got, batch, cached) =
                with_request(&req.behaviors, &candidates, req.request_time, |r| {
                    (
                        plain.score(r).unwrap(),
                        excluding.score(r).unwrap(),
                        excluding.score_batch(&[*r, *r]).unwrap(),
                        excluding.score_cached("user", r).unwrap(),
                    )
                });
            for (i, c) in candidates.iter().enumerate() {
                if seen.contains(c) {
                    assert_eq!(got[i], f32::NEG_INFINITY, "{}: {c} was touched", req.name);
                    assert!(want[i].is_finite(), "{}: {c} without the option", req.name);
                } else {
                    assert_eq!(
                        got[i].to_bits(),
                        want[i].to_bits(),
                        "{}: {c} was not touched",
                        req.name
                    );
                }
            }
            // A batch runs other shapes (float rounding may differ), but the same candidates
            // are -inf and no others.
            for scores in batch.iter().chain([&cached]) {
                let inf: Vec<bool> = scores.iter().map(|s| *s == f32::NEG_INFINITY).collect();
                let want_inf: Vec<bool> = candidates.iter().map(|c| seen.contains(c)).collect();
                assert_eq!(inf, want_inf, "{}: batch or cached", req.name);
            }
            checked += 1;
        }
        assert!(
            checked > 0,
            "{}: no request with target-group behaviors",
            package.display()
        );
    }
}

/// A behavior in another group that happens to carry a candidate's id does not exclude it.
#[test]
fn behaviors_of_other_groups_do_not_exclude_a_candidate() {
    let package = common::repo().join("tests/fixtures/tiny-multigroup");
    let spec = common::read_spec(&package);
    let target = target_group(&package);
    let other = spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .find(|g| *g != target)
        .expect("a second group")
        .to_string();
    let golden = read_golden(&package);
    let req = &golden.requests[0];
    let model = load(&package, true);
    let candidates: Vec<&str> = req.candidates.iter().map(String::as_str).collect();
    let foreign: Vec<Behavior> = candidates
        .iter()
        .map(|c| Behavior {
            group: Some(&other),
            id: c,
            action: None,
            timestamp: req.request_time - 60,
            ..Default::default()
        })
        .collect();
    let scores = model
        .score(&Request {
            behaviors: &foreign,
            candidates: &candidates,
            request_time: req.request_time,
        })
        .unwrap();
    assert!(scores.iter().all(|s| s.is_finite()), "{scores:?}");
}

/// An empty history is a valid request: the model attends to nothing, so every user without
/// behaviors gets the same scores for the same candidates, whatever the request time, and they
/// are the trainer's (golden "empty-history", within its derived tolerance).
#[test]
fn an_empty_history_gets_the_trainers_generic_ranking_at_any_request_time() {
    for package in packages() {
        let golden = read_golden(&package);
        let req = golden
            .requests
            .iter()
            .find(|r| r.name == "empty-history")
            .expect("golden.json has the empty-history request");
        assert!(req.behaviors.is_empty());
        let tol = request_tolerance(&golden, req);
        for exclude_seen in [false, true] {
            let model = load(&package, exclude_seen);
            let candidates: Vec<&str> = req.candidates.iter().map(String::as_str).collect();
            let at = |t: i64| {
                model
                    .score(&Request {
                        behaviors: &[],
                        candidates: &candidates,
                        request_time: t,
                    })
                    .unwrap()
            };
            let scores = at(req.request_time);
            for (i, (got, want)) in scores.iter().zip(&req.scores).enumerate() {
                assert!(
                    (f64::from(*got) - f64::from(*want)).abs() <= tol,
                    "{}: candidate {i}: {got} vs trainer {want} (tolerance {tol})",
                    package.display()
                );
            }
            for t in [0, req.request_time + 86_400 * 365, -1] {
                let other: Vec<u32> = at(t).iter().map(|s| s.to_bits()).collect();
                let first: Vec<u32> = scores.iter().map(|s| s.to_bits()).collect();
                assert_eq!(other, first, "request_time {t}");
            }
        }
    }
}

/// The C builder's setter: 0 and 1 accepted, anything else refused by name; with 1 a touched
/// candidate scores -INFINITY through `atrank_model_score`.
#[test]
fn the_c_builder_sets_exclude_seen_and_refuses_other_values() {
    let package = common::repo().join("tests/fixtures/tiny");
    let dir = CString::new(package.to_str().unwrap()).unwrap();
    let golden = read_golden(&package);
    let req = golden
        .requests
        .iter()
        .find(|r| !r.behaviors.is_empty())
        .unwrap();
    let seen = CString::new(req.behaviors[0].id.as_str()).unwrap();
    let fresh = CString::new(
        req.candidates
            .iter()
            .find(|c| !touched(&req.behaviors, "item").contains(*c))
            .unwrap()
            .as_str(),
    )
    .unwrap();
    let item = CString::new(req.behaviors[0].id.as_str()).unwrap();
    let behavior = atrank::ffi::atrank_behavior {
        item: item.as_ptr(),
        category: std::ptr::null(),
        action: std::ptr::null(),
        timestamp: req.behaviors[0].timestamp,
        group: std::ptr::null(),
        features: std::ptr::null(),
        features_len: 0,
    };
    for (value, want_inf) in [(0u32, false), (1, true)] {
        let mut b = std::ptr::null_mut();
        assert!(atrank_model_builder_new(dir.as_ptr(), &mut b).is_null());
        assert!(atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT).is_null());
        assert!(atrank_model_builder_set_exclude_seen(b, value).is_null());
        let mut model = std::ptr::null();
        assert!(atrank_model_builder_build(b, &mut model).is_null());
        let candidates = [seen.as_ptr(), fresh.as_ptr()];
        let mut scores = [0f32; 2];
        let err = atrank_model_score(
            model,
            &behavior,
            1,
            candidates.as_ptr(),
            2,
            req.request_time,
            scores.as_mut_ptr(),
            2,
        );
        assert!(err.is_null());
        atrank_model_free(model);
        assert_eq!(
            scores[0] == f32::NEG_INFINITY,
            want_inf,
            "{value}: {scores:?}"
        );
        assert!(scores[1].is_finite(), "{value}: {scores:?}");
    }
    let mut b = std::ptr::null_mut();
    assert!(atrank_model_builder_new(dir.as_ptr(), &mut b).is_null());
    let err = atrank_model_builder_set_exclude_seen(b, 2);
    assert!(!err.is_null());
    assert_eq!(
        atrank_error_code(err),
        atrank_code::ATRANK_ERROR_INVALID_ARGUMENT
    );
    // SAFETY: a live error from the call above, freed once.
    let msg = unsafe { std::ffi::CStr::from_ptr(atrank::ffi::atrank_error_message(err)) }
        .to_string_lossy()
        .into_owned();
    assert!(msg.contains("exclude is 2"), "{msg}");
    atrank_error_free(err);
    atrank_model_builder_free(b);
    let err = atrank_model_builder_set_exclude_seen(std::ptr::null_mut(), 1);
    assert_eq!(
        atrank_error_code(err),
        atrank_code::ATRANK_ERROR_NULL_ARGUMENT
    );
    atrank_error_free(err);
}
