//! Candidate scores per second on ONNX Runtime's CUDA execution provider, for batches of
//! users (issue 14, "GPU, ready before a GPU is at hand"). Run by `bash scripts/gpu-check.sh`
//! on a machine with an NVIDIA GPU; on any other machine it stops at the load with the
//! strict policy's error (exit status 3). By hand:
//!
//!     target/release/deps/gpu_serve-<hash> --package PKG [--batches 1,16,64,256] \
//!         [--candidates 1000] [--min-seconds 2]
//!
//! `ATRANK_ORT_LIB` must name the `onnxruntime-gpu` library. Requests: B users, each 50
//! behaviors and N candidates drawn from the package's catalog keys (a fixed generator).
//! For each B, two measurements, each after warm-up calls, median over at least 10 calls and
//! `--min-seconds`:
//! - `score_batch`: atrank's [`Model::score_batch`] from raw behaviors (preprocessing, host
//!   tensors copied to the GPU by ONNX Runtime, scores copied back), i.e. what a caller gets;
//! - `io_binding`: the package's `model.onnx` in a session of its own with ONNX Runtime's I/O
//!   binding: the same prepared inputs bound once, the logits left on the GPU, so the time is
//!   the graph's alone. The logits of one call are also copied back and compared with
//!   `score_batch`'s (`max_abs_diff`).
//!
//! Prints one JSON object. GPU throughput is reported, never asserted: the golden parity on
//! CUDA is `tests/gpu.rs`.

use std::path::PathBuf;

use atrank::{Backend, Behavior, GpuPolicy, LoadOptions, Model, Request, Serving};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::Tensor;
use serde_json::json;

#[path = "common/mod.rs"]
#[allow(dead_code)] // its median() takes a closure; this bench takes the middle of sample()'s
mod common;
use common::{sample, Mix};

fn main() {
    let mut package = None;
    let mut batches = vec![1usize, 16, 64, 256];
    let mut candidates = 1000usize;
    let mut min_seconds = 2.0f64;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--package" => package = it.next().map(PathBuf::from),
            "--batches" => {
                batches = it
                    .next()
                    .expect("--batches B,B,...")
                    .split(',')
                    .map(|s| s.trim().parse().expect("--batches: positive integers"))
                    .collect()
            }
            "--candidates" => candidates = it.next().and_then(|v| v.parse().ok()).expect("N"),
            "--min-seconds" => min_seconds = it.next().and_then(|v| v.parse().ok()).expect("S"),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown argument {other:?}"),
        }
    }
    let package = package.expect("--package PATH is required");

    let options = LoadOptions {
        gpu: GpuPolicy::Strict,
        intra_threads: 1,
        ..LoadOptions::new(Backend::Ort)
    };
    let model = match Model::load_with(&package, &options) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("no usable CUDA execution provider (strict policy): {e}");
            std::process::exit(3);
        }
    };
    assert_eq!(model.serving(), Serving::OrtCuda);
    let n = candidates.min(model.max_candidates());

    // Catalog keys of the target group, to draw behaviors and candidates from.
    let spec = model.spec().clone();
    let keys = common::catalog_keys(&spec, &package);
    let action = spec.actions.first().cloned();
    let mut mix = Mix(20);
    let mut draw = |k: usize| -> Vec<String> {
        (0..k)
            .map(|_| keys.key(mix.next(keys.len())).expect("a key").to_owned())
            .collect()
    };

    // The raw session for the I/O-binding measurement: the package's full graph on CUDA
    // (TF32 off, as atrank's own sessions), 1 intra-op thread.
    let env = atrank::backend::ort::environment().expect("ONNX Runtime environment");
    let graph = package.join(&spec.graph_file);
    let fail = |e: &dyn std::fmt::Display| -> ! { panic!("{}: {e}", graph.display()) };
    let mut session: Session = Session::builder(env)
        .unwrap_or_else(|e| fail(&e))
        .with_intra_threads(1)
        .unwrap_or_else(|e| fail(&e))
        .with_execution_providers([ort::ep::CUDA::default()
            .with_tf32(false)
            .build()
            .error_on_failure()])
        .unwrap_or_else(|e| fail(&e))
        .commit_from_file(&graph)
        .unwrap_or_else(|e| fail(&e));
    let on_gpu = MemoryInfo::new(
        AllocationDevice::CUDA,
        0,
        AllocatorType::Device,
        MemoryType::Default,
    )
    .expect("CUDA memory info");
    let on_host = MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Device,
        MemoryType::Default,
    )
    .expect("CPU memory info");

    let mut rows = Vec::new();
    for &b in &batches {
        let users: Vec<(Vec<String>, Vec<String>)> = (0..b).map(|_| (draw(50), draw(n))).collect();
        let behaviors: Vec<Vec<Behavior<'_>>> = users
            .iter()
            .map(|(hist, _)| {
                hist.iter()
                    .enumerate()
                    .map(|(i, id)| Behavior {
                        group: None,
                        id,
                        category: None,
                        features: &[],
                        action: action.as_deref(),
                        timestamp: 1_700_000_000 + 12_097 * i as i64,
                    })
                    .collect()
            })
            .collect();
        let cands: Vec<Vec<&str>> = users
            .iter()
            .map(|(_, c)| c.iter().map(String::as_str).collect())
            .collect();
        let requests: Vec<Request<'_>> = behaviors
            .iter()
            .zip(&cands)
            .map(|(bh, c)| Request {
                behaviors: bh,
                candidates: c,
                request_time: 1_700_000_000 + 12_097 * 51,
            })
            .collect();
        let reference = model.score_batch(&requests).expect("score_batch");
        let t = sample(
            || {
                model.score_batch(&requests).expect("score_batch");
            },
            10,
            min_seconds,
        );
        let batch_s = t[t.len() / 2].as_secs_f64();

        let prepared = model.prepare(&requests).expect("prepare");
        let mut binding = session.create_binding().expect("I/O binding");
        for tensor in &prepared.tensors {
            let value = Tensor::from_array((tensor.shape.clone(), tensor.data.clone()))
                .expect("input tensor");
            binding
                .bind_input(tensor.name.as_str(), &value)
                .expect("bind input");
        }
        binding
            .bind_output_to_device(spec.output.as_str(), &on_gpu)
            .expect("bind logits to the GPU");
        let t = sample(
            || {
                session.run_binding(&binding).expect("run with I/O binding");
            },
            10,
            min_seconds,
        );
        let bound_s = t[t.len() / 2].as_secs_f64();
        // One call's logits back on the host, against score_batch's.
        binding
            .bind_output_to_device(spec.output.as_str(), &on_host)
            .expect("bind logits to the host");
        let out = session.run_binding(&binding).expect("run with I/O binding");
        let (_, logits) = out[spec.output.as_str()]
            .try_extract_tensor::<f32>()
            .expect("logits");
        let width = prepared.candidates;
        let mut max_abs_diff = 0f64;
        for (u, want) in reference.iter().enumerate() {
            for (k, w) in want.iter().enumerate() {
                let d = (f64::from(logits[u * width + k]) - f64::from(*w)).abs();
                max_abs_diff = max_abs_diff.max(d);
            }
        }
        rows.push(json!({
            "users": b, "candidates": n,
            "score_batch_ms": batch_s * 1e3,
            "score_batch_scores_per_s": (b * n) as f64 / batch_s,
            "io_binding_ms": bound_s * 1e3,
            "io_binding_scores_per_s": (b * n) as f64 / bound_s,
            "max_abs_diff": max_abs_diff,
        }));
        eprintln!("{}", rows.last().unwrap());
    }
    println!(
        "{}",
        json!({"package": package.display().to_string(), "serving": model.serving().name(),
               "history": 50, "results": rows})
    );
}
