//! The tract backend (`atrank::backend::load_graph`) on fuzzed ONNX bytes: input byte 0
//! picks which fixture graph's names and feeds to use (tiny's model.onnx; tiny-multigroup's
//! model.onnx, encoder.onnx or scorer.onnx), the rest is the graph file. The seeds are the
//! fixture graphs themselves, so mutations start from real models. Each slot comes with its
//! fixture's external data (`tables.bin`, format 3), which the runtime's checks and tract
//! read as the runtime hands them over; a mutated external reference (location, offset,
//! length) must be refused, never followed. A graph that loads is run once on the fixture's
//! prepared tensors for a small request (full and encoder graphs).
//!
//! Checked: nothing panics (libFuzzer aborts on a panic) and errors are not `Panic`.
//! Inputs are capped by `-max_len` (scripts/fuzz.sh) a little above the largest fixture graph.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use atrank::backend::{load_graph, onnx_check, ExternalFile, Feed};
use atrank::preprocess::{Prepared, Preprocessor};
use atrank::{Backend, Behavior, ErrorCode, LoadOptions, Request};
use atrank_fuzz::{scratch_dir, Fixture};
use libfuzzer_sys::fuzz_target;

/// One graph slot: the names the spec gives it, and the feeds to run it with (`None`: load
/// only; the scorer would need float encodings).
struct Slot {
    inputs: Vec<String>,
    outputs: Vec<String>,
    prepared: Option<Prepared>,
    /// The fixture's external data files (`tables.bin`).
    external: Vec<ExternalFile>,
}

fn external(f: &Fixture) -> Vec<ExternalFile> {
    f.spec
        .external_data
        .iter()
        .map(|name| ExternalFile {
            name: name.clone(),
            data: bytes::Bytes::from(f.files[name].clone()),
        })
        .collect()
}

struct State {
    slots: Vec<Slot>,
    path: PathBuf,
}

fn prepared(f: &Fixture, keep: impl Fn(&str) -> bool) -> Prepared {
    let pre = Preprocessor::load(&f.spec, &f.dir).expect("fixture preprocessor");
    let history = [
        Behavior::item("i1", None, Some("like"), 881_000_000),
        Behavior::item("i2", None, None, 881_100_000),
    ];
    let mut p = pre
        .prepare(&[Request {
            behaviors: &history,
            candidates: &["i1", "i3"],
            request_time: 881_251_000,
        }])
        .expect("fixture request");
    p.tensors.retain(|t| keep(&t.name));
    p
}

fn state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| {
        atrank_fuzz::let_tract_panics_reach_the_runtime_guard();
        let tiny = Fixture::read("tiny");
        let mg = Fixture::read("tiny-multigroup");
        let split = mg
            .spec
            .split
            .clone()
            .expect("tiny-multigroup has split graphs");
        let is_candidate =
            |spec: &atrank::spec::Spec, n: &str| spec.candidate_inputs.iter().any(|(_, c)| c == n);
        let history: Vec<String> = mg
            .spec
            .inputs
            .iter()
            .filter(|n| !is_candidate(&mg.spec, n))
            .cloned()
            .collect();
        let slots = vec![
            Slot {
                inputs: tiny.spec.inputs.clone(),
                outputs: vec![tiny.spec.output.clone()],
                prepared: Some(prepared(&tiny, |_| true)),
                external: external(&tiny),
            },
            Slot {
                inputs: mg.spec.inputs.clone(),
                outputs: vec![mg.spec.output.clone()],
                prepared: Some(prepared(&mg, |_| true)),
                external: external(&mg),
            },
            Slot {
                inputs: history,
                outputs: split.encoder_outputs.clone(),
                prepared: Some(prepared(&mg, |n| !is_candidate(&mg.spec, n))),
                external: external(&mg),
            },
            Slot {
                inputs: split.scorer_inputs.clone(),
                outputs: vec![split.scorer_output.clone()],
                prepared: None,
                external: external(&mg),
            },
        ];
        State {
            slots,
            path: scratch_dir("graph_load").join("model.onnx"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, graph)) = data.split_first() else {
        return;
    };
    let s = state();
    let slot = &s.slots[which as usize % s.slots.len()];
    let bytes = bytes::Bytes::copy_from_slice(graph);
    // The runtime's own decoder and checks first (names only: the slot has no vocabularies);
    // then tract on the same bytes whatever the checks said, to fuzz its parser too.
    let f32_inputs = ["encoded", "mask"];
    let expect = onnx_check::Expect {
        inputs: slot
            .inputs
            .iter()
            .map(|n| {
                let t = if f32_inputs.contains(&n.as_str()) {
                    onnx_check::InputType::F32
                } else {
                    onnx_check::InputType::I64
                };
                (n.as_str(), t)
            })
            .collect(),
        outputs: slot.outputs.iter().map(String::as_str).collect(),
        rows: Vec::new(),
    };
    let sizes: Vec<(&str, u64)> = slot
        .external
        .iter()
        .map(|f| (f.name.as_str(), f.data.len() as u64))
        .collect();
    if let Err(e) = onnx_check::check("model.onnx", bytes.clone(), &expect, &sizes) {
        assert_eq!(e.code(), ErrorCode::InvalidPackage, "onnx_check: {e}");
    }
    let mut options = LoadOptions::new(Backend::Tract);
    // Also build a shape-specialised plan on the run below (its own code path) when asked.
    options.tract_plans = usize::from(which / 4 % 2);
    let loaded = load_graph(
        &options,
        &s.path,
        &bytes,
        &slot.external,
        &slot.inputs,
        &slot.outputs,
    );
    let graph = match loaded {
        Ok(l) => l.graph,
        Err(e) => {
            assert_ne!(e.code(), ErrorCode::Panic, "load: {e}");
            return;
        }
    };
    let Some(p) = &slot.prepared else {
        return;
    };
    let feeds: Vec<Feed<'_>> = p
        .tensors
        .iter()
        .map(|t| Feed::I64(&t.name, &t.shape, &t.data))
        .collect();
    let outputs: Vec<&str> = slot.outputs.iter().map(String::as_str).collect();
    match graph.run(&feeds, &outputs) {
        Ok(out) => assert_eq!(out.len(), outputs.len()),
        Err(e) => assert_ne!(e.code(), ErrorCode::Panic, "run: {e}"),
    }
});
