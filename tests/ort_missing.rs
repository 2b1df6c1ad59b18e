//! A missing ONNX Runtime library is a clear error, never a panic (`ort::init()` would panic;
//! atrank uses `ort::init_from`), and is not remembered: a later load may succeed. Its own test
//! binary: ONNX Runtime loads once per process.

mod common;

use atrank::{Backend, ErrorCode, Model};

#[test]
fn a_missing_onnx_runtime_library_is_an_error_that_names_it() {
    let path = std::path::Path::new("/nonexistent/libonnxruntime.so.1.31.1");
    let e = atrank::backend::ort::init(Some(path)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnavailable);
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/libonnxruntime.so.1.31.1") && msg.contains("ATRANK_ORT_LIB"),
        "{msg}"
    );
    // A failed load is not remembered: a second attempt with the same missing path fails the
    // same way, and one with the real library (when the environment names one) loads. tract
    // works throughout.
    let e = atrank::backend::ort::init(Some(path)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnavailable, "{e}");
    assert!(Model::load(&common::packages()[0], Backend::Tract).is_ok());
    if std::env::var_os("ATRANK_ORT_LIB").is_some_and(|v| !v.is_empty()) {
        let m =
            Model::load(&common::packages()[0], Backend::Ort).expect("ORT with the real library");
        assert_eq!(m.backend(), Backend::Ort);
    }
}
