//! Load options: GPU policy (strict vs permissive on a machine without a usable CUDA provider),
//! per-model thread counts, and option validation.

mod common;

use atrank::{Backend, ErrorCode, GpuPolicy, LoadOptions, Model, Serving};
use common::{check_golden, packages, GoldenRequest};

fn score(model: &Model) -> impl FnMut(&GoldenRequest) -> Vec<f32> + '_ {
    move |req| common::score_golden(model, req)
}

fn ort_options(gpu: GpuPolicy, threads: usize) -> Option<LoadOptions> {
    let lib = common::ort_library()?;
    Some(LoadOptions {
        intra_threads: threads,
        gpu,
        ort_library: Some(lib),
        ..LoadOptions::new(Backend::Ort)
    })
}

#[test]
fn strict_gpu_policy_is_an_error_without_a_usable_cuda_provider() {
    // These machines have no GPU and the CPU build of ONNX Runtime: registering the CUDA
    // execution provider must fail, and strict mode must say so rather than run on the CPU.
    let Some(opts) = ort_options(GpuPolicy::Strict, 1) else {
        return;
    };
    let e = Model::load_with(&packages()[0], &opts).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnavailable, "{e}");
    assert!(
        e.to_string().contains("strict") && e.to_string().contains("CUDA"),
        "{e}"
    );
}

#[test]
fn permissive_gpu_policy_falls_back_to_the_cpu_and_says_so() {
    let Some(opts) = ort_options(GpuPolicy::Permissive, 1) else {
        return;
    };
    let model = Model::load_with(&packages()[0], &opts).unwrap();
    assert_eq!(model.serving(), Serving::OrtCpu);
    let reason = model.fallback_reason().expect("a fallback reason");
    assert!(reason.contains("CUDA"), "{reason}");
    check_golden(&packages()[0], "ort-permissive", score(&model));
}

#[test]
fn two_intra_op_threads_give_the_trainers_scores() {
    let Some(opts) = ort_options(GpuPolicy::Off, 2) else {
        return;
    };
    let model = Model::load_with(&packages()[0], &opts).unwrap();
    assert_eq!(
        (model.serving(), model.fallback_reason()),
        (Serving::OrtCpu, None)
    );
    check_golden(&packages()[0], "ort-2-threads", score(&model));
}

#[test]
fn tract_has_no_gpu_strict_fails_permissive_serves_on_cpu() {
    let mut opts = LoadOptions::new(Backend::Tract);
    opts.gpu = GpuPolicy::Strict;
    let e = Model::load_with(&packages()[0], &opts).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnavailable);
    opts.gpu = GpuPolicy::Permissive;
    let model = Model::load_with(&packages()[0], &opts).unwrap();
    assert_eq!(model.serving(), Serving::Tract);
    assert!(model.fallback_reason().is_some());
}

#[test]
fn zero_threads_is_rejected() {
    let mut opts = LoadOptions::new(Backend::Tract);
    opts.intra_threads = 0;
    let e = Model::load_with(&packages()[0], &opts).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.to_string().contains("intra_threads"), "{e}");
}

#[test]
fn session_counts_outside_1_to_64_are_rejected() {
    for sessions in [0, atrank::backend::MAX_SESSIONS + 1] {
        let opts = LoadOptions {
            sessions,
            ..LoadOptions::new(Backend::Tract)
        };
        let e = Model::load_with(&packages()[0], &opts).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.to_string().contains("sessions"), "{e}");
    }
}

#[test]
fn a_pool_of_ort_sessions_gives_the_trainers_scores() {
    let Some(mut opts) = ort_options(GpuPolicy::Off, 1) else {
        return;
    };
    opts.sessions = 4;
    for pkg in packages() {
        let model = Model::load_with(&pkg, &opts).unwrap();
        check_golden(&pkg, "ort, 4 sessions", score(&model));
    }
}
