//! Packages exported with `--precision int8` (graph.precision, docs/package-format.md): served
//! on ONNX Runtime, refused on tract, and an unknown precision refused by the spec reader.

mod common;

use std::path::PathBuf;

use atrank::{Backend, ErrorCode, Model, Precision};

/// `ATRANK_PACKAGE_INT8`: an int8 export of a trained checkpoint, written on this machine
/// (scripts/test.sh exports the MovieLens test checkpoint again with `--precision int8`).
/// Required when `ATRANK_REQUIRE_ORT=1`, as the test command sets.
fn int8_package() -> Option<PathBuf> {
    common::path_required_with_ort("ATRANK_PACKAGE_INT8", "the int8 package")
}

#[test]
fn ort_scores_the_int8_package_as_onnxruntime_did_at_export() {
    let (Some(pkg), Some(lib)) = (int8_package(), common::ort_library()) else {
        return;
    };
    atrank::backend::ort::init(Some(&lib)).unwrap_or_else(|e| panic!("{e}"));
    let model = Model::load(&pkg, Backend::Ort).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.spec().precision, Precision::Int8);
    // The golden scores are onnxruntime's own on the int8 model.onnx, computed by the exporter
    // on this machine from its reference preprocessing; here atrank's preprocessing feeds the
    // same graph on the same ONNX Runtime build. The per-request float32 tolerance covers the
    // float parts (docs/tolerances.md, "int8 packages").
    common::check_golden(&pkg, "ort int8", |req| common::score_golden(&model, req));
}

#[test]
fn tract_refuses_an_int8_package() {
    // The tiny fixture's spec marked int8: tract refuses it before reading any graph.
    let dir = common::copy_package(&common::repo().join("tests/fixtures/tiny"), "int8-tract");
    let mut spec = common::read_spec(&dir);
    spec["graph"]["precision"] = "int8".into();
    common::write_spec(&dir, &spec);
    let err = Model::load(&*dir, Backend::Tract).expect_err("tract loaded an int8 package");
    assert_eq!(err.code(), ErrorCode::BackendUnavailable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("int8") && msg.contains("ONNX Runtime"),
        "{msg}"
    );
    // "float32" spelled out is the default
    spec["graph"]["precision"] = "float32".into();
    common::write_spec(&dir, &spec);
    let model = Model::load(&*dir, Backend::Tract).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.spec().precision, Precision::Float32);
}

#[test]
fn an_unknown_precision_is_refused() {
    let dir = common::copy_package(&common::repo().join("tests/fixtures/tiny"), "int8-unknown");
    for bad in [
        serde_json::json!("int4"),
        serde_json::json!(8),
        serde_json::json!("INT8"),
    ] {
        let mut spec = common::read_spec(&dir);
        spec["graph"]["precision"] = bad.clone();
        common::write_spec(&dir, &spec);
        let err = Model::load(&*dir, Backend::Tract).expect_err("an unknown precision loaded");
        assert_eq!(err.code(), ErrorCode::InvalidPackage, "{bad}: {err}");
        assert!(err.to_string().contains("graph.precision"), "{bad}: {err}");
    }
}
