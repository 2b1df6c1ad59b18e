// Gives the binary an rpath to the prefix that `scripts/install.sh PREFIX --with-ort` filled,
// found through pkg-config, so that atrank's default `libonnxruntime.so` opens with no
// environment variable (docs/embedding/rust.md). Without an installed atrank nothing is added,
// and ONNX Runtime is then found through `LoadOptions::ort_library` or `ATRANK_ORT_LIB`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let libdir = Command::new("pkg-config")
        .args(["--variable=libdir", "atrank"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if let Some(dir) = libdir {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{dir}");
    }
}
