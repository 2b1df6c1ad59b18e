//! A too-old ONNX Runtime library is refused with a clear error, not a panic or a crash. The
//! stand-in library (tests/fixtures/fake-ort) reports version 1.10.0; it is built here with the
//! system C compiler. Its own test binary: ONNX Runtime loads once per process.

mod common;

use std::process::Command;

use atrank::{Backend, ErrorCode, Model};

#[test]
fn a_too_old_onnx_runtime_is_refused_with_an_error() {
    let out = std::env::temp_dir().join(format!("atrank-fake-ort-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let lib = out.join("libonnxruntime.so.1.10.0");
    let src = common::repo().join("tests/fixtures/fake-ort/fake_onnxruntime.c");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) to build the stand-in library");
    assert!(status.success(), "cc failed on {}", src.display());
    let e = atrank::backend::ort::init(Some(&lib)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnavailable);
    let msg = e.to_string();
    assert!(
        msg.contains("1.10.0") && msg.contains("libonnxruntime.so.1.10.0"),
        "{msg}"
    );
    // The refusal is not remembered: asking again fails the same way, and the real library
    // (when the environment names one) then loads in the same process.
    let e = atrank::backend::ort::init(Some(&lib)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnavailable, "{e}");
    if std::env::var_os("ATRANK_ORT_LIB").is_some_and(|v| !v.is_empty()) {
        let m =
            Model::load(&common::packages()[0], Backend::Ort).expect("ORT with the real library");
        assert_eq!(m.backend(), Backend::Ort);
    }
    std::fs::remove_dir_all(&out).unwrap();
}
