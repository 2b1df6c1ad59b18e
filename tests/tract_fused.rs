//! tract with atrank's fused attention and layer-norm kernels
//! (`LoadOptions::tract_fused_attention`, `LoadOptions::tract_fused_layer_norm`, on by default
//! in optimised builds, set explicitly here) against tract's own nodes for the same graphs: the
//! same scores within the tolerance of two float32 evaluations, and the kernels really in use
//! where the CPU runs them (the plan counters say how many attention cores and layer
//! normalisations they replaced).

mod common;

use atrank::backend::tract_attention;
use atrank::{Backend, LoadOptions, Model, Request};
use common::{
    any_request_tolerance, borrow_behaviors, feature_pairs, packages, read_golden,
    request_tolerance, score_golden,
};

fn tract(pkg: &std::path::Path, fused: bool) -> Model {
    let opts = LoadOptions {
        tract_fused_attention: fused,
        tract_fused_layer_norm: fused,
        ..LoadOptions::new(Backend::Tract)
    };
    Model::load_with(pkg, &opts).unwrap_or_else(|e| panic!("{}: {e}", pkg.display()))
}

fn assert_close(label: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{label}: lengths");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{label} cand {k}: {g}");
        let d = (f64::from(*g) - f64::from(*w)).abs();
        assert!(
            d <= tol,
            "{label} cand {k}: fused {g} vs tract's nodes {w}, |diff| {d:e} > {tol:e}"
        );
    }
}

#[test]
fn fused_kernels_score_as_tracts_own_nodes() {
    let fresh = std::env::var_os("ATRANK_PACKAGE").filter(|p| !p.is_empty());
    for pkg in packages() {
        let fused = tract(&pkg, true);
        let plain = tract(&pkg, false);
        let off = plain.plan_cache_stats();
        assert_eq!(
            (off.fused_attention, off.fused_layer_norm),
            (0, 0),
            "{}: fusion off",
            pkg.display()
        );
        let n_fused = fused.plan_cache_stats().fused_attention;
        let n_norm = fused.plan_cache_stats().fused_layer_norm;
        // The package the test command exports now has the exporter's current graph form, so
        // every attention core of it matches; the committed fixtures predate that form
        // (their mask is an Add over the scores) and run on tract's nodes either way.
        if fresh.as_deref() == Some(pkg.as_os_str()) && tract_attention::available() {
            assert!(
                n_fused >= 2,
                "{}: {n_fused} attention cores fused; model.onnx has two",
                pkg.display()
            );
            assert!(
                n_norm >= 4,
                "{}: {n_norm} layer norms fused; model.onnx has four",
                pkg.display()
            );
        }
        if !tract_attention::available() {
            assert_eq!(
                (n_fused, n_norm),
                (0, 0),
                "{}: fused without the kernels' CPU",
                pkg.display()
            );
        }
        let golden = read_golden(&pkg);
        for req in &golden.requests {
            let tol = request_tolerance(&golden, req);
            let label = format!("{} {}", pkg.display(), req.name);
            assert_close(
                &label,
                &score_golden(&fused, req),
                &score_golden(&plain, req),
                tol,
            );
        }
        // Shorter histories: other key lengths, so the kernel's padding lanes vary.
        let tol = any_request_tolerance(&golden);
        for req in golden.requests.iter().take(4) {
            let features = feature_pairs(&req.behaviors);
            let mut all = borrow_behaviors(&req.behaviors, &features);
            all.sort_by_key(|b| b.timestamp);
            for keep in [1usize, 5, 17, 33] {
                let behaviors = &all[all.len().saturating_sub(keep)..];
                let candidates: Vec<&str> = req.candidates.iter().map(String::as_str).collect();
                let r = Request {
                    behaviors,
                    candidates: &candidates,
                    request_time: req.request_time,
                };
                let label = format!("{} {} last {keep}", pkg.display(), req.name);
                assert_close(
                    &label,
                    &fused.score(&r).unwrap(),
                    &plain.score(&r).unwrap(),
                    tol,
                );
            }
        }
        eprintln!(
            "{}: {n_fused} attention cores and {n_norm} layer norms fused",
            pkg.display()
        );
    }
}
