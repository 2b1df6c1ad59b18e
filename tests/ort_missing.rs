//! A missing ONNX Runtime library is a clear error, never a panic (`ort::init()` would panic;
//! atrank uses `ort::init_from`). Its own test binary: ONNX Runtime loads once per process.

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
    // Every later ORT load in this process reports the same failure; tract still works.
    let e = Model::load(&common::packages()[0], Backend::Ort).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnavailable, "{e}");
    assert!(Model::load(&common::packages()[0], Backend::Tract).is_ok());
}
