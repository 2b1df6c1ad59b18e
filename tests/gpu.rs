//! Golden parity on ONNX Runtime's CUDA execution provider, strict GPU policy. Ignored by
//! default: these machines have neither a GPU nor the CUDA build of ONNX Runtime (the
//! tests in `options.rs` check that strict mode fails here). `bash scripts/gpu-check.sh run`
//! runs them on a machine with an NVIDIA GPU (`--ignored`), with `ATRANK_ORT_LIB` pointing at
//! the `onnxruntime-gpu` library.
//!
//! The tolerances are the golden file's, derived for any float32 evaluation order
//! (docs/tolerances.md). atrank turns TF32 off in the CUDA provider (`backend::ort`):
//! cuBLAS's TF32 mode rounds matmul inputs to 10 mantissa bits, which no float32 bound
//! covers. One assumption of that bound is not checked on a GPU yet: it counts every
//! element-wise operation as one correct rounding, and CUDA documents its single-precision
//! `expf` at up to 2 ulp (docs/tolerances.md says what that adds).

mod common;

use atrank::{Backend, Behavior, GpuPolicy, LoadOptions, Model, Request, Serving};
use common::{borrow_behaviors, check_golden, feature_pairs, packages};

fn cuda_model(pkg: &std::path::Path) -> Model {
    let lib = common::ort_library().expect("ATRANK_ORT_LIB: the onnxruntime-gpu library");
    let opts = LoadOptions {
        gpu: GpuPolicy::Strict,
        ort_library: Some(lib),
        ..LoadOptions::new(Backend::Ort)
    };
    let model = Model::load_with(pkg, &opts).unwrap_or_else(|e| panic!("{}: {e}", pkg.display()));
    assert_eq!(model.serving(), Serving::OrtCuda, "{}", pkg.display());
    model
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu: bash scripts/gpu-check.sh"]
fn cuda_matches_the_trainer() {
    for pkg in packages() {
        let model = cuda_model(&pkg);
        check_golden(&pkg, "ort-cuda", |req| common::score_golden(&model, req));
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and onnxruntime-gpu: bash scripts/gpu-check.sh"]
fn cuda_batches_score_as_the_trainer() {
    // Every golden request of a package in one score_batch call (padded together on the GPU).
    for pkg in packages() {
        let model = cuda_model(&pkg);
        let golden = common::read_golden(&pkg);
        let features: Vec<_> = golden
            .requests
            .iter()
            .map(|r| feature_pairs(&r.behaviors))
            .collect();
        let owned: Vec<(Vec<Behavior<'_>>, Vec<&str>)> = golden
            .requests
            .iter()
            .zip(&features)
            .map(|(r, f)| {
                let cands = r.candidates.iter().map(String::as_str).collect();
                (borrow_behaviors(&r.behaviors, f), cands)
            })
            .collect();
        let requests: Vec<Request<'_>> = owned
            .iter()
            .zip(&golden.requests)
            .map(|((b, c), r)| Request {
                behaviors: b,
                candidates: c,
                request_time: r.request_time,
            })
            .collect();
        let scores = model.score_batch(&requests).unwrap();
        check_golden(&pkg, "ort-cuda batch", |req| {
            let i = golden.requests.iter().position(|r| r.name == req.name);
            scores[i.expect("a golden request of this package")].clone()
        });
    }
}
