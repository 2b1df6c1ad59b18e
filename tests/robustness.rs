//! Property tests: bad input never panics and never yields malformed tensors. Spec parsing on
//! arbitrary and on mutated specs, preprocessing on arbitrary requests (both package formats),
//! and package loading with corrupt graph files. The default run is short (the test command
//! runs it); `PROPTEST_CASES=20000 cargo test --test robustness` is the longer run.

mod common;

use std::path::Path;

use atrank::preprocess::Preprocessor;
use atrank::spec::Spec;
use atrank::{Backend, Behavior, Model, Request};
use proptest::prelude::*;
use serde_json::Value;

fn spec_text(pkg: &Path) -> String {
    std::fs::read_to_string(pkg.join("spec.json")).unwrap()
}

/// Replaces the value at a pseudo-random path of `v` with `with`.
fn mutate(v: &mut Value, path: &[usize], with: Value) {
    let Some((k, rest)) = path.split_first() else {
        *v = with;
        return;
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(k % m.len()).unwrap().clone();
            mutate(m.get_mut(&key).unwrap(), rest, with);
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            mutate(&mut a[k % n], rest, with);
        }
        other => *other = with,
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        Just(Value::Array(vec![])),
        Just(serde_json::json!({})),
        Just(Value::from(0)),
        Just(Value::from(u64::MAX)),
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("i1".to_owned()),
        Just("242".to_owned()),
        Just("c0".to_owned()),
        Just("".to_owned()),
        ".{0,6}",
        "[a-z]{1,2}[0-9]{1,3}(_[0-9])?",
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        0i64..2_000_000_000,
        Just(i64::MIN),
        Just(i64::MAX)
    ]
}

#[derive(Debug, Clone)]
struct RawBehavior {
    group: Option<String>,
    id: String,
    category: Option<String>,
    features: Vec<(String, String)>,
    action: Option<String>,
    timestamp: i64,
}

fn behavior() -> impl Strategy<Value = RawBehavior> {
    let group = prop_oneof![
        Just(None),
        Just(Some("item".to_owned())),
        Just(Some("coupon".to_owned())),
        Just(Some("query".to_owned())),
        ".{0,5}".prop_map(Some),
    ];
    let feature = (
        prop_oneof![
            Just("category".to_owned()),
            Just("shop".to_owned()),
            ".{0,4}"
        ],
        id(),
    );
    (
        group,
        id(),
        proptest::option::of(id()),
        proptest::collection::vec(feature, 0..3),
        proptest::option::of(prop_oneof![
            Just("like".to_owned()),
            Just("click".to_owned()),
            ".{0,4}"
        ]),
        timestamp(),
    )
        .prop_map(
            |(group, id, category, features, action, timestamp)| RawBehavior {
                group,
                id,
                category,
                features,
                action,
                timestamp,
            },
        )
}

fn check_request(
    pre: &Preprocessor,
    spec: &Spec,
    behaviors: &[RawBehavior],
    cands: &[String],
    t: i64,
) {
    let features: Vec<Vec<(&str, &str)>> = behaviors
        .iter()
        .map(|b| {
            b.features
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let bs: Vec<Behavior<'_>> = behaviors
        .iter()
        .zip(&features)
        .map(|(b, f)| Behavior {
            group: b.group.as_deref(),
            id: &b.id,
            category: b.category.as_deref(),
            features: f,
            action: b.action.as_deref(),
            timestamp: b.timestamp,
        })
        .collect();
    let cs: Vec<&str> = cands.iter().map(String::as_str).collect();
    let Ok(p) = pre.prepare(&[Request {
        behaviors: &bs,
        candidates: &cs,
        request_time: t,
    }]) else {
        return; // an error is a fine answer; a panic is not
    };
    assert_eq!(p.users, 1);
    assert_eq!(p.candidates, cands.len());
    let mut names: Vec<&str> = p.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut want: Vec<&str> = spec.inputs.iter().map(String::as_str).collect();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want);
    for t in &p.tensors {
        assert_eq!(
            t.data.len(),
            t.shape.iter().product::<usize>(),
            "{}",
            t.name
        );
        assert!(
            t.data.iter().all(|&v| v >= 0),
            "{} has a negative index",
            t.name
        );
    }
    for g in &spec.groups {
        let len = p.get(&g.length_input).unwrap().data[0];
        assert!(len >= 0 && len as usize <= g.max_history);
        let time = p.get(&g.time_input).unwrap();
        assert!(time
            .data
            .iter()
            .all(|&b| b as usize <= spec.time_buckets.boundaries.len()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)))]

    #[test]
    fn spec_parsing_never_panics_on_arbitrary_text(text in ".{0,200}") {
        let _ = Spec::from_json(&text);
    }

    #[test]
    fn spec_parsing_never_panics_on_mutated_specs(
        which in 0usize..2,
        path in proptest::collection::vec(any::<usize>(), 0..6),
        leaf in json_leaf(),
    ) {
        let pkg = &common::packages()[which];
        let mut v: Value = serde_json::from_str(&spec_text(pkg)).unwrap();
        mutate(&mut v, &path, leaf);
        if let Ok(spec) = Spec::from_json(&v.to_string()) {
            // Whatever parses is internally consistent.
            prop_assert!(spec.target < spec.groups.len());
            prop_assert!(spec.groups.iter().all(|g| !g.features.is_empty()));
        }
    }

    #[test]
    fn preprocessing_never_panics_and_gives_well_formed_tensors(
        which in 0usize..2,
        behaviors in proptest::collection::vec(behavior(), 0..30),
        cands in proptest::collection::vec(id(), 0..8),
        t in timestamp(),
    ) {
        let pkg = &common::packages()[which];
        let spec = Spec::read(pkg).unwrap();
        let pre = Preprocessor::load(&spec, pkg).unwrap();
        check_request(&pre, &spec, &behaviors, &cands, t);
    }
}

#[test]
fn corrupt_graph_files_are_errors_not_panics() {
    let pkg = &common::packages()[0];
    let onnx = std::fs::read(pkg.join("model.onnx")).unwrap();
    // The whole package (vocabularies, catalog, tables.bin, the split graphs), model.onnx
    // replaced below.
    let dir = common::copy_package(pkg, "corrupt");
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut variants: Vec<Vec<u8>> = vec![vec![], b"not a model".to_vec()];
    for cut in [1usize, 16, onnx.len() / 3, onnx.len() / 2, onnx.len() - 1] {
        variants.push(onnx[..cut].to_vec());
    }
    for _ in 0..6 {
        let mut bytes = onnx.clone();
        for _ in 0..8 {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        variants.push(bytes);
    }
    let ort = common::ort_library();
    if let Some(lib) = &ort {
        atrank::backend::ort::init(Some(lib)).unwrap();
    }
    let spec_text = std::fs::read_to_string(dir.join("spec.json")).unwrap();
    for (k, bytes) in variants.iter().enumerate() {
        std::fs::write(dir.join("model.onnx"), bytes).unwrap();
        // Record the corrupt file in the manifest, so the corruption reaches the graph checks
        // and the backends rather than stopping at the manifest's hash.
        let mut spec: Value = serde_json::from_str(&spec_text).unwrap();
        spec["files"]["model.onnx"] = serde_json::json!({
            "sha256": atrank::package::sha256_hex(bytes),
            "bytes": bytes.len(),
        });
        std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
        let mut backends = vec![Backend::Tract];
        if ort.is_some() {
            backends.push(Backend::Ort);
        }
        for backend in backends {
            let outcome = std::panic::catch_unwind(|| Model::load(&dir, backend).map(|_| ()));
            let result = outcome.unwrap_or_else(|_| panic!("{backend}: variant {k} panicked"));
            // A byte flip may leave a loadable graph; everything else must be an error.
            if k < 7 {
                assert!(result.is_err(), "{backend}: variant {k} loaded");
            }
        }
    }
}

/// A graph the fuzzer found (graph_load, 2026-11-30): one `Unsqueeze` axis beyond its input's
/// rank makes tract-hir 0.23.9 panic during shape inference (`AddDims::output_shape`, a
/// `SmallVec::insert` past the end). tract is given it directly, without the runtime's own
/// graph checks, so the test sees tract's reaction: loading must fail with an error that
/// names the file and says tract panicked, and nothing unwinds out of the runtime.
#[cfg(feature = "backend-tract")]
#[test]
fn a_graph_that_panics_tract_is_a_load_error() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile/tract_unsqueeze_panic.onnx");
    let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let err = match atrank::backend::load_graph(
        &atrank::LoadOptions::new(Backend::Tract),
        &path,
        &bytes,
        &[],
        &names(&[
            "hist_item",
            "hist_category",
            "hist_action",
            "hist_time",
            "hist_len",
            "cand_item",
            "cand_category",
        ]),
        &names(&["logits"]),
    ) {
        Ok(_) => panic!("tract loaded a graph with an Unsqueeze axis beyond the rank"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(err.code(), atrank::ErrorCode::Backend, "{msg}");
    assert!(
        msg.contains("tract_unsqueeze_panic.onnx") && msg.contains("panicked"),
        "{msg}"
    );
}
