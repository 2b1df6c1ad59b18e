//! The serving half of `benches/paper.py` (issue 14, "Benchmark at the paper's size"): loads
//! one package in this process, measures one user's request **through the C ABI** at several
//! candidate counts and prints one JSON object. Run by the driver (`bash benches/paper.sh`),
//! which builds it in release (`cargo bench --bench paper_serve --no-run`), but it can be run
//! by hand:
//!
//!     target/release/deps/paper_serve-<hash> --package PKG --backend ort|tract \
//!         [--sizes 100,250,1000,10000] [--min-calls 30] [--min-seconds 1] [--profile]
//!         [--no-fuse] [--split-concat] [--ab-fuse ROUNDS]
//!
//! How the C ABI is reached: the crate's entry points are `pub extern "C" fn`s in the public
//! module `atrank::ffi` (the same symbols `capi/` exports from `libatrank.so`), so this bench
//! calls them as Rust paths (`atrank::ffi::atrank_model_score`, ...) on the rlib, with C
//! strings, `atrank_behavior` structs and pointer arrays as a C caller builds them. No
//! `extern "C" { ... }` block and no link to the cdylib: the code that runs is the same, and
//! the bench needs nothing outside `cargo bench`. The model is built with
//! `atrank_model_builder_new` / `_set_backend` / `_set_intra_threads(1)` /
//! `atrank_model_builder_build`; the ONNX Runtime library comes from `$ATRANK_ORT_LIB`.
//!
//! Requests: one user, 50 behaviors (item keys drawn from the package's own id vocabulary,
//! action "like" when the package's spec knows it, else its first action, distinct
//! timestamps 12,097 s apart, spanning about a week), and N candidates drawn from the same
//! vocabulary (with repeats when N exceeds it). N is clipped to the model's `max_candidates`
//! (reported as `clipped`). Eight different requests per N are cycled through.
//!
//! For each N: warm-up calls (at least 3 and 0.1 s), then calls until at least `--min-calls`
//! calls and `--min-seconds` seconds (at most 100,000 calls); reports the median, p10 and p90
//! in ms and the median per candidate in µs. `cached_median_ms`: the same requests through
//! `atrank_model_score_cached`, one user key per request, measured the same way after the
//! plain calls: every call after the warm-up finds its user's encoding in the cache (returning
//! users; with the package's split graphs only the scorer runs). `prepare_ms` is the median of the same requests'
//! preprocessing alone through the Rust API (`Model::prepare`: vocabulary and catalog
//! look-ups, time buckets, tensors; no graph run), on a second `Model` loaded with the same
//! backend (on tract, `prepare` pads to the shapes tract's plans are specialised to, as the
//! C ABI's calls do: `tract_padded_n`). `alternated_c_ms` / `alternated_rust_ms`: the same
//! requests through the C ABI and through the Rust API's `Model::score` on that second model,
//! alternated call by call (the order swapped every pair, at least 20 and at most 2,000 pairs),
//! and `ffi_share` = (C − Rust) / C, the share of a C call that the FFI itself adds (argument
//! checks, C strings to `&str`, the behavior structs; noise can make it negative).
//!
//! `--profile` (tract only; at N = `--profile-n`, default 1000, clipped): per-node times of a
//! tract plan through `SimpleState::run_plan_with_eval`, summed by op type and by node (top 15
//! of each). The plan is built here from the package's `model.onnx` with its tables inline
//! (tract's own external-data loading) and specialised to the prepared shapes, so it is the
//! graph atrank runs except for the embedding `Gather`s, which atrank lifts out of the graph
//! (`backend::lift`) and serves from the mapped `tables.bin`. The op names are tract's after
//! optimisation (e.g. `OptMatMul`, fused element-wise ops), with atrank's fused attention kernel
//! in place as atrank loads the graph (`AtrankFusedAttention`; `--no-fuse`: tract's own nodes),
//! and decluttered as atrank does, without tract's `ConcatThenEinsum` pass (`--split-concat`:
//! with it, as tract's own `into_optimized` does).
//!
//! `--ab-fuse ROUNDS` (tract; replaces the measurement above): the same requests through the
//! Rust API on two models of the package, one with atrank's fused attention and layer-norm
//! kernels (`LoadOptions::tract_fused_attention`, `tract_fused_layer_norm`, the defaults in
//! optimised builds), one with tract's own nodes, timed in alternation (see `ab_fuse`).

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atrank::ffi::{
    atrank_behavior, atrank_error, atrank_error_free, atrank_error_message, atrank_model,
    atrank_model_builder_build, atrank_model_builder_new, atrank_model_builder_set_backend,
    atrank_model_builder_set_intra_threads, atrank_model_free, atrank_model_max_candidates,
    atrank_model_score, atrank_model_score_cached, ATRANK_BACKEND_ORT, ATRANK_BACKEND_TRACT,
};
use atrank::{Backend, Behavior, LoadOptions, Model, Request};
use serde_json::{json, Value};

#[path = "common/mod.rs"]
mod common;
use common::{median, sample, Mix};

struct Args {
    package: PathBuf,
    backend: Backend,
    sizes: Vec<usize>,
    min_calls: usize,
    min_seconds: f64,
    profile: bool,
    profile_n: usize,
    /// `--no-fuse`: tract's own attention and layer-norm nodes
    /// (LoadOptions::tract_fused_attention and tract_fused_layer_norm false) in the profile.
    fuse: bool,
    /// `--split-concat`: the profile's plan with tract's ConcatThenEinsum pass, which atrank
    /// leaves out (see `atrank::backend::tract::declutter`).
    split_concat: bool,
    /// `--ab-fuse ROUNDS`: only the fused-attention A/B (see `ab_fuse`).
    ab_rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        package: PathBuf::new(),
        backend: Backend::Ort,
        sizes: vec![100, 250, 1000, 10000],
        min_calls: 30,
        min_seconds: 1.0,
        profile: false,
        profile_n: 1000,
        fuse: true,
        split_concat: false,
        ab_rounds: 0,
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
            "--sizes" => {
                a.sizes = it
                    .next()
                    .expect("--sizes N,N,...")
                    .split(',')
                    .map(|s| s.trim().parse().expect("--sizes: positive integers"))
                    .collect();
                assert!(
                    !a.sizes.is_empty() && a.sizes.iter().all(|&n| n > 0),
                    "--sizes: positive integers"
                );
            }
            "--min-calls" => a.min_calls = it.next().and_then(|v| v.parse().ok()).expect("N"),
            "--min-seconds" => {
                a.min_seconds = it.next().and_then(|v| v.parse().ok()).expect("SECONDS")
            }
            "--profile" => a.profile = true,
            "--profile-n" => a.profile_n = it.next().and_then(|v| v.parse().ok()).expect("N"),
            "--no-fuse" => a.fuse = false,
            "--split-concat" => a.split_concat = true,
            "--ab-fuse" => a.ab_rounds = it.next().and_then(|v| v.parse().ok()).expect("ROUNDS"),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown argument {other:?}"),
        }
    }
    assert!(
        !a.package.as_os_str().is_empty(),
        "--package PATH is required"
    );
    a.min_calls = a.min_calls.max(1);
    a
}

/// Panics with the error's message when a C ABI call failed (and frees the error).
fn check(err: *mut atrank_error, what: &str) {
    if err.is_null() {
        return;
    }
    // SAFETY: a live error returned by the call just made; its message is NUL-terminated and
    // owned by the error, copied here before the error is freed (once).
    let msg = unsafe { CStr::from_ptr(atrank_error_message(err)) }
        .to_string_lossy()
        .into_owned();
    atrank_error_free(err);
    panic!("{what}: {msg}");
}

/// One request through the C ABI: `atrank_model_score`, or `atrank_model_score_cached` under
/// `user_key`; panics on an error.
fn score_c(model: *const atrank_model, r: &CReq, user_key: Option<&CString>, scores: &mut [f32]) {
    let (b, nb, c, nc) = (
        r.behaviors.as_ptr(),
        r.behaviors.len(),
        r.cand_ptrs.as_ptr(),
        r.cand_ptrs.len(),
    );
    let (out, len) = (scores.as_mut_ptr(), scores.len());
    match user_key {
        None => check(
            atrank_model_score(model, b, nb, c, nc, T0, out, len),
            "atrank_model_score",
        ),
        Some(key) => check(
            atrank_model_score_cached(model, key.as_ptr(), b, nb, c, nc, T0, out, len),
            "atrank_model_score_cached",
        ),
    }
}

/// One request as a C caller holds it: owned C strings, the behaviors pointing into them and
/// the candidates' pointer array.
struct CReq {
    hist: Vec<String>,
    cands: Vec<String>,
    _strings: Vec<CString>,
    behaviors: Vec<atrank_behavior>,
    cand_ptrs: Vec<*const c_char>,
}

/// Behaviors k = 0..50 happen `STEP * k` seconds before the request (distinct timestamps,
/// spread over a week so that they fall in several time buckets).
const STEP: i64 = 12_097;
const T0: i64 = 1_700_000_000;

impl CReq {
    fn new(hist: Vec<String>, cands: Vec<String>, action: Option<&CString>) -> CReq {
        let strings: Vec<CString> = hist
            .iter()
            .chain(&cands)
            .map(|s| CString::new(s.as_str()).expect("ids have no NUL"))
            .collect();
        let action = action.map_or(std::ptr::null(), |a| a.as_ptr());
        // The CStrings' buffers are on the heap: moving the Vec into the struct keeps the
        // pointers valid.
        let behaviors = strings[..hist.len()]
            .iter()
            .enumerate()
            .map(|(k, id)| atrank_behavior {
                item: id.as_ptr(),
                category: std::ptr::null(),
                action,
                timestamp: T0 - STEP * k as i64,
                group: std::ptr::null(),
                features: std::ptr::null(),
                features_len: 0,
            })
            .collect();
        let cand_ptrs = strings[hist.len()..].iter().map(|c| c.as_ptr()).collect();
        CReq {
            hist,
            cands,
            _strings: strings,
            behaviors,
            cand_ptrs,
        }
    }

    /// The same request through the Rust API's types (for `Model::prepare`).
    fn with_rust<T>(&self, action: Option<&str>, f: impl FnOnce(&Request<'_>) -> T) -> T {
        let behaviors: Vec<Behavior<'_>> = self
            .hist
            .iter()
            .enumerate()
            .map(|(k, id)| Behavior::item(id, None, action, T0 - STEP * k as i64))
            .collect();
        let cands: Vec<&str> = self.cands.iter().map(String::as_str).collect();
        f(&Request {
            behaviors: &behaviors,
            candidates: &cands,
            request_time: T0,
        })
    }
}

/// The action of the drawn behaviors: "like" when the package's spec knows it, else its first.
fn request_action(spec: &atrank::spec::Spec) -> Option<String> {
    spec.actions
        .iter()
        .find(|x| x.as_str() == "like")
        .or(spec.actions.first())
        .cloned()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn main() {
    let a = args();
    if a.ab_rounds > 0 {
        ab_fuse(&a);
        return;
    }
    let dir = CString::new(a.package.to_str().expect("a UTF-8 package path")).expect("no NUL");

    // The model, through the C ABI: ORT (or tract), 1 intra-op thread.
    let t = Instant::now();
    let mut builder = std::ptr::null_mut();
    check(
        atrank_model_builder_new(dir.as_ptr(), &mut builder),
        "atrank_model_builder_new",
    );
    let c_backend = match a.backend {
        Backend::Ort => ATRANK_BACKEND_ORT,
        Backend::Tract => ATRANK_BACKEND_TRACT,
    };
    check(
        atrank_model_builder_set_backend(builder, c_backend),
        "atrank_model_builder_set_backend",
    );
    check(
        atrank_model_builder_set_intra_threads(builder, 1),
        "atrank_model_builder_set_intra_threads",
    );
    let mut model: *const atrank_model = std::ptr::null();
    check(
        atrank_model_builder_build(builder, &mut model),
        "atrank_model_builder_build",
    );
    let load_ms = ms(t.elapsed());
    let mut max_candidates = 0usize;
    check(
        atrank_model_max_candidates(model, &mut max_candidates),
        "atrank_model_max_candidates",
    );

    // The same package through the Rust API: the vocabulary, the spec, and `prepare`.
    let mut options = LoadOptions::new(a.backend);
    options.intra_threads = 1;
    let rust = Model::load_with(&a.package, &options).expect("load the package (Rust API)");
    let spec = rust.spec().clone();
    let keys = common::catalog_keys(&spec, &a.package);
    let action = request_action(&spec);
    let c_action = action.as_deref().map(|s| CString::new(s).expect("no NUL"));
    let draw = |mix: &mut Mix, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                keys.key(mix.next(keys.len()))
                    .expect("a key of the vocabulary")
                    .to_owned()
            })
            .collect()
    };

    let mut mix = Mix(14);
    let mut rows = Vec::new();
    let mut profile_req: Option<CReq> = None;
    let profile_n = a.profile_n.min(max_candidates);
    for &asked in &a.sizes {
        let n = asked.min(max_candidates);
        let reqs: Vec<CReq> = (0..8)
            .map(|_| {
                let hist = draw(&mut mix, 50);
                let cands = draw(&mut mix, n);
                CReq::new(hist, cands, c_action.as_ref())
            })
            .collect();
        let mut scores = vec![0f32; n];
        let mut k = 0;
        let t = sample(
            || {
                score_c(model, &reqs[k % reqs.len()], None, &mut scores);
                k += 1;
            },
            a.min_calls,
            a.min_seconds,
        );
        assert!(
            scores.iter().all(|s| s.is_finite()),
            "non-finite scores at N = {n}"
        );
        let calls = t.len();
        let pct = |p: usize| ms(t[(calls - 1) * p / 100]);
        let med = ms(t[calls / 2]);
        // Returning users: the same requests through atrank_model_score_cached, one user key
        // per request, so after the warm-up every call finds its user's encoding cached and
        // runs only the scorer graph (with the package's split graphs; without them it is
        // atrank_model_score).
        let user_keys: Vec<CString> = (0..reqs.len())
            .map(|u| CString::new(format!("user-{u}")).expect("no NUL"))
            .collect();
        let mut k = 0;
        let tc = sample(
            || {
                let u = k % reqs.len();
                score_c(model, &reqs[u], Some(&user_keys[u]), &mut scores);
                k += 1;
            },
            a.min_calls,
            a.min_seconds,
        );
        let cached_med = ms(tc[tc.len() / 2]);
        // The FFI call's own cost: the same requests through the C ABI and through the Rust
        // API (`Model::score` on a second model of the same options), alternated call by call
        // in this process (the order swapped every pair), so the box's drift hits both alike.
        // What the C ABI adds is its argument checks and conversions (C strings to &str, UTF-8
        // validation, the behavior structs).
        let pairs = calls.clamp(20, 2000);
        let (mut via_c, mut via_rust) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
        for i in 0..pairs + 6 {
            let r = &reqs[i % reqs.len()];
            let time_c = |scores: &mut [f32]| {
                let s = std::time::Instant::now();
                score_c(model, r, None, scores);
                s.elapsed()
            };
            let time_rust = || {
                let s = std::time::Instant::now();
                let got = r.with_rust(action.as_deref(), |req| rust.score(req).expect("score"));
                drop(std::hint::black_box(got));
                s.elapsed()
            };
            let (c, rr) = if i % 2 == 0 {
                let c = time_c(&mut scores);
                (c, time_rust())
            } else {
                let rr = time_rust();
                (time_c(&mut scores), rr)
            };
            if i >= 6 {
                via_c.push(c);
                via_rust.push(rr);
            }
        }
        via_c.sort();
        via_rust.sort();
        let (alt_c, alt_rust) = (ms(via_c[pairs / 2]), ms(via_rust[pairs / 2]));
        // The preprocessing alone, the same requests, as many calls.
        let mut k = 0;
        let padded = reqs[0].with_rust(action.as_deref(), |req| {
            rust.prepare(std::slice::from_ref(req))
                .expect("prepare")
                .candidates
        });
        let prep = median(
            || {
                let r = &reqs[k % reqs.len()];
                k += 1;
                let p = r.with_rust(action.as_deref(), |req| {
                    rust.prepare(std::slice::from_ref(req)).expect("prepare")
                });
                drop(std::hint::black_box(p));
            },
            calls,
        );
        rows.push(json!({
            "n": n,
            "asked": asked,
            "clipped": n != asked,
            "calls": calls,
            "median_ms": round(med, 4),
            "p10_ms": round(pct(10), 4),
            "p90_ms": round(pct(90), 4),
            "per_candidate_us": round(med * 1e3 / n as f64, 4),
            "cached_median_ms": round(cached_med, 4),
            "prepare_ms": round(ms(prep), 4),
            "prepare_share": round(ms(prep) / med, 4),
            "alternated_c_ms": round(alt_c, 4),
            "alternated_rust_ms": round(alt_rust, 4),
            "ffi_share": round((alt_c - alt_rust) / alt_c, 4),
            "tract_padded_n": if a.backend == Backend::Tract { json!(padded) } else { Value::Null },
        }));
        if a.profile && n == profile_n {
            profile_req = reqs.into_iter().next();
        }
    }

    let profile = if a.profile {
        let req = profile_req.unwrap_or_else(|| {
            let hist = draw(&mut mix, 50);
            let cands = draw(&mut mix, profile_n);
            CReq::new(hist, cands, c_action.as_ref())
        });
        let prepared = req.with_rust(action.as_deref(), |r| {
            rust.prepare(std::slice::from_ref(r)).expect("prepare")
        });
        match a.backend {
            Backend::Tract => tract_profile(
                &a.package,
                &prepared,
                a.min_calls,
                a.min_seconds,
                a.fuse,
                a.split_concat,
            ),
            Backend::Ort => {
                let note = "ORT's per-op profile: Python onnxruntime (benches/paper.py --profile)";
                json!({ "note": note })
            }
        }
    } else {
        Value::Null
    };

    atrank_model_free(model);
    let out = json!({
        "backend": format!("{:?}", a.backend).to_lowercase(),
        "api": "C ABI (atrank::ffi, called as Rust paths on the rlib)",
        "intra_threads": 1,
        "history": 50,
        "action": action,
        "max_candidates": max_candidates,
        "load_ms": round(load_ms, 1),
        "sizes": a.sizes,
        "results": rows,
        "profile": profile,
    });
    println!("{out}");
}

/// Per-op times of a tract plan of the package's `model.onnx` specialised to `prepared`'s
/// shapes (see the file's doc: the embedding gathers stay in this plan, atrank lifts them).
#[cfg(feature = "backend-tract")]
fn tract_profile(
    package: &Path,
    prepared: &atrank::preprocess::Prepared,
    min_calls: usize,
    min_seconds: f64,
    fuse: bool,
    split_concat: bool,
) -> Value {
    match tract_profile_inner(
        package,
        prepared,
        min_calls,
        min_seconds,
        fuse,
        split_concat,
    ) {
        Ok(v) => v,
        Err(e) => json!({"error": format!("{e:#}")}),
    }
}

#[cfg(not(feature = "backend-tract"))]
fn tract_profile(
    _: &Path,
    _: &atrank::preprocess::Prepared,
    _: usize,
    _: f64,
    _: bool,
    _: bool,
) -> Value {
    json!({"error": "built without the backend-tract feature"})
}

#[cfg(feature = "backend-tract")]
fn tract_profile_inner(
    package: &Path,
    prepared: &atrank::preprocess::Prepared,
    min_calls: usize,
    min_seconds: f64,
    fuse: bool,
    split_concat: bool,
) -> tract_onnx::prelude::TractResult<Value> {
    use std::collections::HashMap;
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::model::TypedSimpleState;
    use tract_onnx::tract_core::plan::{eval, SimpleState};

    let mut typed = tract_onnx::onnx()
        .model_for_path(package.join("model.onnx"))?
        .into_typed()?;
    // as atrank loads it (without tract's ConcatThenEinsum pass, unless --split-concat)
    atrank::backend::tract::declutter(&mut typed, split_concat)?;
    // as atrank loads it (LoadOptions::tract_fused_attention and tract_fused_layer_norm, on
    // unless --no-fuse)
    if fuse {
        atrank::backend::tract_attention::fuse(&mut typed)?;
        atrank::backend::tract_norm::fuse(&mut typed)?;
    }
    // Each symbolic input axis takes the prepared tensor's size.
    let mut subs: HashMap<Symbol, TDim> = HashMap::new();
    let mut inputs: TVec<TValue> = TVec::new();
    for outlet in typed.input_outlets()?.to_vec() {
        let name = &typed.node(outlet.node).name;
        let t = prepared
            .get(name)
            .ok_or_else(|| TractError::msg(format!("no prepared tensor for input {name}")))?;
        let fact = typed.outlet_fact(outlet)?;
        for (d, &size) in fact.shape.iter().zip(&t.shape) {
            if let TDim::Sym(s) = d {
                subs.insert(s.clone(), TDim::Val(size as i64));
            }
        }
        inputs.push(Tensor::from_shape(&t.shape, &t.data)?.into_tvalue());
    }
    let plan = atrank::backend::tract::optimized(typed.set_symbols(&subs)?, split_concat)?
        .into_runnable()?;
    let nodes = plan.model().nodes().len();
    let mut per_node = vec![Duration::ZERO; nodes];
    let mut state = SimpleState::new(&plan)?;
    let run = |state: &mut TypedSimpleState, per_node: Option<&mut Vec<Duration>>| match per_node {
        None => state.run(inputs.clone()).map(drop),
        Some(acc) => state
            .run_plan_with_eval(inputs.clone(), |ctx, op_state, node, input| {
                let s = Instant::now();
                let out = eval(ctx, op_state, node, input);
                acc[node.id] += s.elapsed();
                out
            })
            .map(drop),
    };
    // Plain runs for the wall time of this plan, then the timed ones.
    let mut plain = Vec::new();
    for _ in 0..3 {
        run(&mut state, None)?;
    }
    let start = Instant::now();
    while plain.len() < min_calls || start.elapsed().as_secs_f64() < min_seconds {
        let s = Instant::now();
        run(&mut state, None)?;
        plain.push(s.elapsed());
    }
    plain.sort();
    let mut calls = 0usize;
    let start = Instant::now();
    while calls < min_calls || start.elapsed().as_secs_f64() < min_seconds {
        run(&mut state, Some(&mut per_node))?;
        calls += 1;
    }
    let total: Duration = per_node.iter().sum();
    let mut by_type: HashMap<String, (Duration, usize)> = HashMap::new();
    let mut by_node = Vec::new();
    for node in plan.model().nodes() {
        let d = per_node[node.id];
        let e = by_type.entry(node.op().name().to_string()).or_default();
        e.0 += d;
        e.1 += 1;
        by_node.push((d, node.name.clone(), node.op().name().to_string()));
    }
    let mut by_type: Vec<_> = by_type.into_iter().collect();
    by_type.sort_by_key(|x| std::cmp::Reverse(x.1 .0));
    by_node.sort_by_key(|x| std::cmp::Reverse(x.0));
    let per_call = |d: Duration| round(ms(d) / calls as f64, 4);
    let share = |d: Duration| round(d.as_secs_f64() / total.as_secs_f64().max(1e-12), 4);
    let shapes: Vec<Value> = prepared
        .tensors
        .iter()
        .map(|t| json!({"name": t.name, "shape": t.shape}))
        .collect();
    Ok(json!({
        "plan": "model.onnx, tables inline (not lifted), shapes specialised to the prepared inputs",
        "split_concat": split_concat,
        "shapes": shapes,
        "calls": calls,
        "plain_median_ms": round(ms(plain[plain.len() / 2]), 4),
        "profiled_ms_per_call": per_call(total),
        "by_type": by_type.iter().take(15).map(|(name, (d, count))| json!({
            "op": name, "nodes": count, "ms": per_call(*d), "share": share(*d)
        })).collect::<Vec<_>>(),
        "by_node": by_node.iter().take(15).map(|(d, name, op)| json!({
            "node": name, "op": op, "ms": per_call(*d), "share": share(*d)
        })).collect::<Vec<_>>(),
    }))
}

/// `--ab-fuse ROUNDS`: tract with atrank's fused attention and layer-norm kernels against
/// tract's own nodes (`LoadOptions::tract_fused_attention`, `tract_fused_layer_norm`), through the Rust API (`Model::score`; the C ABI has
/// no switch for it), both models in this process. Per N and round, each model is timed as in
/// the main measurement (the order alternates between rounds); prints each model's median over
/// rounds of its per-round medians, their ratio, and the largest score difference between the
/// two models over the requests.
fn ab_fuse(a: &Args) {
    let load = |fuse: bool| {
        let mut options = LoadOptions::new(Backend::Tract);
        options.tract_fused_attention = fuse;
        options.tract_fused_layer_norm = fuse;
        Model::load_with(&a.package, &options).expect("load the package (tract)")
    };
    let (fused, plain) = (load(true), load(false));
    let spec = fused.spec().clone();
    let keys = common::catalog_keys(&spec, &a.package);
    let action = request_action(&spec);
    let c_action = action.as_deref().map(|s| CString::new(s).expect("no NUL"));
    let mut mix = Mix(14);
    let mut draw = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| keys.key(mix.next(keys.len())).expect("a key").to_owned())
            .collect()
    };
    let max_n = fused.max_candidates();
    let mut rows = Vec::new();
    for &asked in &a.sizes {
        let n = asked.min(max_n);
        let reqs: Vec<CReq> = (0..8)
            .map(|_| {
                let hist = draw(50);
                CReq::new(hist, draw(n), c_action.as_ref())
            })
            .collect();
        let mut max_diff = 0f32;
        for r in &reqs {
            let (x, y) = r.with_rust(action.as_deref(), |q| {
                (
                    fused.score(q).expect("score"),
                    plain.score(q).expect("score"),
                )
            });
            for (p, q) in x.iter().zip(&y) {
                max_diff = max_diff.max((p - q).abs());
            }
        }
        let mut med = [Vec::new(), Vec::new()];
        for round in 0..a.ab_rounds {
            for k in 0..2 {
                let which = (k + round) % 2;
                let model = if which == 0 { &fused } else { &plain };
                let mut i = 0;
                let t = sample(
                    || {
                        reqs[i % reqs.len()].with_rust(action.as_deref(), |q| {
                            model.score(q).expect("score");
                        });
                        i += 1;
                    },
                    a.min_calls,
                    a.min_seconds,
                );
                med[which].push(ms(t[t.len() / 2]));
            }
        }
        let mid = |v: &mut Vec<f64>| {
            v.sort_by(|x, y| x.total_cmp(y));
            v[v.len() / 2]
        };
        let (f, p) = (mid(&mut med[0]), mid(&mut med[1]));
        rows.push(json!({
            "n": n, "fused_ms": round(f, 3), "tract_nodes_ms": round(p, 3),
            "speedup": round(p / f, 3), "max_abs_diff": max_diff,
            "fused_cores": fused.plan_cache_stats().fused_attention,
            "fused_layer_norms": fused.plan_cache_stats().fused_layer_norm,
        }));
    }
    println!("{}", json!({ "ab_fuse": rows, "rounds": a.ab_rounds }));
}
