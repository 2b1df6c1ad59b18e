//! Golden parity through the Rust API, on every compiled backend.

mod common;

use atrank::{Backend, Behavior, Model, Request};
use common::{borrow_behaviors as behaviors, feature_pairs};
use common::{check_golden, packages, GoldenRequest};

fn score_with(model: &Model) -> impl FnMut(&GoldenRequest) -> Vec<f32> + '_ {
    move |req| common::score_golden(model, req)
}

#[test]
fn tract_matches_the_trainer() {
    for pkg in packages() {
        let model =
            Model::load(&pkg, Backend::Tract).unwrap_or_else(|e| panic!("{}: {e}", pkg.display()));
        assert_eq!(model.backend(), Backend::Tract);
        check_golden(&pkg, "tract", score_with(&model));
    }
}

#[test]
fn ort_matches_the_trainer() {
    let Some(lib) = common::ort_library() else {
        return;
    };
    atrank::backend::ort::init(Some(&lib)).unwrap_or_else(|e| panic!("{e}"));
    for pkg in packages() {
        let model =
            Model::load(&pkg, Backend::Ort).unwrap_or_else(|e| panic!("{}: {e}", pkg.display()));
        check_golden(&pkg, "ort", score_with(&model));
    }
}

#[test]
fn a_batch_of_users_scores_as_each_user_alone() {
    // Padding invariance end to end: users batched together (each group padded to the longest
    // history in the batch) score as they do alone, on both package formats.
    for pkg in &packages()[..2] {
        let model = Model::load(pkg, Backend::Tract).unwrap();
        let golden = common::read_golden(pkg);
        // Different history lengths and candidate counts, padded together (the golden files'
        // requests differ in both).
        let mut reqs: Vec<&GoldenRequest> = golden.requests.iter().take(5).collect();
        reqs.extend(golden.requests.last());
        let features: Vec<_> = reqs.iter().map(|r| feature_pairs(&r.behaviors)).collect();
        let owned: Vec<(Vec<Behavior<'_>>, Vec<&str>, i64)> = reqs
            .iter()
            .zip(&features)
            .map(|(r, f)| {
                let cands = r.candidates.iter().map(String::as_str).collect();
                (behaviors(&r.behaviors, f), cands, r.request_time)
            })
            .collect();
        let requests: Vec<Request<'_>> = owned
            .iter()
            .map(|(b, c, t)| Request {
                behaviors: b,
                candidates: c,
                request_time: *t,
            })
            .collect();
        let batch = model.score_batch(&requests).unwrap();
        assert_eq!(batch.len(), requests.len());
        for (u, r) in requests.iter().enumerate() {
            // alone vs trainer and batched vs alone: two float32 evaluations of the same
            // logits each, within the request's derived 2 D U M (docs/tolerances.md)
            let tol = common::request_tolerance(&golden, reqs[u]);
            let alone = model.score(r).unwrap();
            assert_eq!(batch[u].len(), r.candidates.len());
            for k in 0..r.candidates.len() {
                let want = reqs[u].scores[k];
                assert!(
                    (f64::from(alone[k]) - f64::from(want)).abs() <= tol,
                    "{} user {u} cand {k}: {} vs trainer {want}",
                    pkg.display(),
                    alone[k]
                );
                assert!(
                    (f64::from(batch[u][k]) - f64::from(alone[k])).abs() <= tol,
                    "{} user {u} cand {k}: batched {} vs alone {}",
                    pkg.display(),
                    batch[u][k],
                    alone[k]
                );
            }
        }
    }
}

#[test]
fn a_behavior_of_an_unknown_group_is_an_error_naming_it() {
    let model = Model::load(&packages()[1], Backend::Tract).unwrap();
    let history = [
        Behavior {
            group: Some("query"),
            id: "q1_0",
            action: Some("search"),
            timestamp: 10,
            ..Default::default()
        },
        Behavior {
            group: Some("shops"),
            id: "s1",
            timestamp: 10,
            ..Default::default()
        },
    ];
    let e = model
        .score(&Request {
            behaviors: &history,
            candidates: &["i1"],
            request_time: 20,
        })
        .unwrap_err();
    assert_eq!(e.code(), atrank::ErrorCode::InvalidArgument);
    assert!(
        e.to_string()
            .contains("behaviors[1].group \"shops\" is not a group"),
        "{e}"
    );
}

#[test]
fn load_errors_name_the_problem() {
    let e = Model::load("/nonexistent/atrank-package", Backend::Tract).unwrap_err();
    assert_eq!(e.code(), atrank::ErrorCode::Io);
    assert!(
        e.to_string()
            .contains("cannot read /nonexistent/atrank-package"),
        "{e}"
    );

    let dir = std::env::temp_dir().join(format!("atrank-bad-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = std::fs::read_to_string(packages()[0].join("spec.json")).unwrap();
    std::fs::write(
        dir.join("spec.json"),
        spec.replace("\"spec_version\": 3", "\"spec_version\": 99"),
    )
    .unwrap();
    let e = Model::load(&dir, Backend::Tract).unwrap_err();
    assert_eq!(e.code(), atrank::ErrorCode::InvalidPackage);
    assert!(
        e.to_string()
            .contains("spec_version 99 is not supported: this runtime reads spec_version 3"),
        "{e}"
    );
    // The former versions too (a v3 spec relabelled: refused before anything else is read).
    for v in [1, 2] {
        std::fs::write(
            dir.join("spec.json"),
            spec.replace("\"spec_version\": 3", &format!("\"spec_version\": {v}")),
        )
        .unwrap();
        let e = Model::load(&dir, Backend::Tract).unwrap_err();
        assert_eq!(e.code(), atrank::ErrorCode::InvalidPackage);
        assert!(
            e.to_string().contains(&format!(
                "spec_version {v} is not supported: this runtime reads spec_version 3"
            )),
            "{e}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
