//! Hostile packages, through the Rust API: each is refused at load with `InvalidPackage` and a
//! message naming the problem, on both backends, never a panic or a backend error at score time.
//! The manifest (`files` in spec.json) is rewritten for each altered file, so that the checks
//! behind it (graph structure, spec against graph) are what refuses the package; without the
//! rewrite the manifest alone refuses it, which the last test checks.

mod common;

use std::path::{Path, PathBuf};

use atrank::package::sha256_hex;
use atrank::{Backend, Behavior, ErrorCode, LoadOptions, Model, Request};
use serde_json::Value;

/// A fresh copy of the fixture package `name` (files copied, not linked).
fn copy_package(name: &str, tag: &str) -> PathBuf {
    let src = common::repo().join("tests/fixtures").join(name);
    let dst = std::env::temp_dir().join(format!("atrank-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(&src, &dst);
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn read_spec(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("spec.json")).unwrap()).unwrap()
}

fn write_spec(dir: &Path, spec: &Value) {
    std::fs::write(
        dir.join("spec.json"),
        serde_json::to_string_pretty(spec).unwrap(),
    )
    .unwrap();
}

/// Replaces package file `rel` and records its new size and SHA-256 in the manifest.
fn replace_file(dir: &Path, rel: &str, bytes: &[u8]) {
    std::fs::write(dir.join(rel), bytes).unwrap();
    let mut spec = read_spec(dir);
    spec["files"][rel] = serde_json::json!({"sha256": sha256_hex(bytes), "bytes": bytes.len()});
    write_spec(dir, &spec);
}

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Tract];
    if let Some(lib) = common::ort_library() {
        atrank::backend::ort::init(Some(&lib)).unwrap();
        b.push(Backend::Ort);
    }
    b
}

fn expect_refused(dir: &Path, needle: &str) {
    for backend in backends() {
        let e = Model::load(dir, backend).expect_err("the package must be refused");
        assert_eq!(e.code(), ErrorCode::InvalidPackage, "{backend}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{backend}: {e:#} lacks {needle:?}"
        );
    }
}

#[test]
fn a_vocabulary_larger_than_the_graphs_table_is_refused_at_load() {
    let dir = copy_package("tiny", "vocab");
    let mut text = std::fs::read_to_string(dir.join("vocab/item.txt")).unwrap();
    for k in 0..200_000 {
        text.push_str(&format!("extra-{k}\n"));
    }
    replace_file(&dir, "vocab/item.txt", text.as_bytes());
    expect_refused(&dir, "hist_item");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_or_garbage_graph_is_an_invalid_package_not_a_backend_error() {
    let dir = copy_package("tiny", "truncated");
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    for cut in [onnx.len() / 2, onnx.len() - 1, 1] {
        replace_file(&dir, "model.onnx", &onnx[..cut]);
        expect_refused(&dir, "model.onnx");
    }
    replace_file(&dir, "model.onnx", b"this is not an ONNX model");
    expect_refused(&dir, "model.onnx");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_graphs_are_refused_before_a_backend_optimises_them() {
    let dir = copy_package("tiny", "graphs");
    let hostile = common::repo().join("tests/fixtures/hostile");
    for (file, needle) in [
        ("chain.onnx", "nodes, more than"),
        ("constant_of_shape.onnx", "ConstantOfShape"),
    ] {
        replace_file(
            &dir,
            "model.onnx",
            &std::fs::read(hostile.join(file)).unwrap(),
        );
        expect_refused(&dir, needle);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_graph_input_of_the_wrong_dtype_is_refused() {
    // The multigroup scorer takes float inputs; as the main graph it has the wrong inputs.
    let dir = copy_package("tiny-multigroup", "dtype");
    let scorer = std::fs::read(dir.join("scorer.onnx")).unwrap();
    replace_file(&dir, "model.onnx", &scorer);
    expect_refused(&dir, "model.onnx");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_manifest_refuses_a_file_that_does_not_belong() {
    let dir = copy_package("tiny", "manifest");
    // Same size, one byte changed: only the hash can tell.
    let mut vocab = std::fs::read(dir.join("vocab/category.txt")).unwrap();
    vocab[0] ^= 1;
    std::fs::write(dir.join("vocab/category.txt"), &vocab).unwrap();
    expect_refused(&dir, "SHA-256");
    // A spec without a manifest.
    let mut spec = read_spec(&dir);
    spec.as_object_mut().unwrap().remove("files");
    write_spec(&dir, &spec);
    expect_refused(&dir, "\"files\"");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_encoding_cache_stays_within_its_byte_budget() {
    let pkg = common::repo().join("tests/fixtures/tiny-multigroup");
    let budget = 64 << 10;
    let model = Model::load_with(
        &pkg,
        &LoadOptions {
            cache_capacity: 1 << 20,
            cache_bytes: budget,
            ..LoadOptions::new(Backend::Tract)
        },
    )
    .unwrap();
    let ids: Vec<String> = (0..50).map(|k| format!("i{k}")).collect();
    let history: Vec<Behavior<'_>> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| Behavior::item(id, None, None, 1_300_000_000 + k as i64))
        .collect();
    let mut most = 0;
    for u in 0..500 {
        let key = format!("user-{u}");
        let r = Request {
            behaviors: &history,
            candidates: &["i1", "i2"],
            request_time: 1_300_100_000,
        };
        model.score_cached(&key, &r).unwrap();
        let s = model.cache_stats();
        assert!(
            s.bytes <= budget,
            "cache holds {} bytes, budget {budget}",
            s.bytes
        );
        most = most.max(s.entries);
    }
    let s = model.cache_stats();
    assert!(
        s.entries > 0 && s.entries < 500,
        "{s:?}: the budget must evict"
    );
    assert_eq!(s.misses, 500);
    assert!(most > 1, "at least two encodings fit in {budget} bytes");
}

#[test]
fn limits_on_options_are_checked_before_loading() {
    let pkg = common::repo().join("tests/fixtures/tiny-multigroup");
    let e = Model::load_with(
        &pkg,
        &LoadOptions {
            cache_capacity: usize::MAX,
            ..LoadOptions::new(Backend::Tract)
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let e = Model::load("", Backend::Tract).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}
