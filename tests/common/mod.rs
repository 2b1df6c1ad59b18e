//! The golden suite shared by the Rust-API and C-ABI test binaries (tract's api/proxy idea: one
//! suite, several ways in). Golden scores come from the trainer (PyTorch), not from atrank.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// golden.json (docs/package-format-v3.md, "golden.json"). Tolerances are the exporter's derived first-order
/// bounds 2 D U M on two float32 evaluations of a logit (docs/tolerances.md).
#[derive(Debug, Deserialize)]
pub struct Golden {
    /// The largest per-request tolerance (the only one in files of older exporters).
    pub tolerance: f64,
    /// 2 D U M_max, M_max bounded from the weights: holds for any request, golden or not.
    #[serde(default)]
    pub bound_any_request: Option<f64>,
    pub requests: Vec<GoldenRequest>,
}

/// A raw request without scores (the shared preprocessing vectors).
#[derive(Debug, Deserialize)]
pub struct GoldenRequestRaw {
    pub name: String,
    pub request_time: i64,
    pub behaviors: Vec<GoldenBehavior>,
    pub candidates: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenRequest {
    pub name: String,
    pub request_time: i64,
    pub behaviors: Vec<GoldenBehavior>,
    pub candidates: Vec<String>,
    pub scores: Vec<f32>,
    /// 2 D U M for this request's logits (absent in files of older exporters).
    #[serde(default)]
    pub tolerance: Option<f64>,
}

/// A golden behavior (`group`, `id`, `features`; `item` and `category` are still read as
/// aliases).
#[derive(Debug, Deserialize)]
pub struct GoldenBehavior {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(alias = "item")]
    pub id: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub features: BTreeMap<String, String>,
    pub action: Option<String>,
    pub timestamp: i64,
}

impl GoldenBehavior {
    /// The `(name, value)` feature pairs, borrowed.
    pub fn feature_pairs(&self) -> Vec<(&str, &str)> {
        self.features
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// The repository the tests were built in, or `ATRANK_REPO` (scripts/gpu-check.sh runs the
/// prebuilt CUDA tests on another machine, where the fixtures lie elsewhere).
pub fn repo() -> PathBuf {
    std::env::var_os("ATRANK_REPO")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The committed format-3 fixtures (`tiny`: one group; `tiny-multigroup`), plus the package
/// named by `ATRANK_PACKAGE` (e.g. the freshly trained MovieLens package the test command
/// exports).
pub fn packages() -> Vec<PathBuf> {
    let mut out = vec![
        repo().join("tests/fixtures/tiny"),
        repo().join("tests/fixtures/tiny-multigroup"),
    ];
    if let Some(p) = std::env::var_os("ATRANK_PACKAGE").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    out
}

/// The package's `spec_version`.
pub fn spec_version(package: &Path) -> u64 {
    let path = package.join("spec.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["spec_version"].as_u64().unwrap_or(0)
}

pub fn read_golden(package: &Path) -> Golden {
    let path = package.join("golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `ATRANK_TOLERANCE`, which overrides every tolerance read from golden.json (like tract's
/// `TRACT_ULP`).
fn tolerance_override() -> Option<f64> {
    std::env::var("ATRANK_TOLERANCE")
        .ok()
        .and_then(|t| t.parse().ok())
}

/// The golden file's top-level tolerance (the largest per-request one), or `ATRANK_TOLERANCE`.
pub fn tolerance(golden: &Golden) -> f64 {
    tolerance_override().unwrap_or(golden.tolerance)
}

/// The tolerance for any two float32 evaluations of `req`'s logits (runtime vs trainer, batch
/// vs alone, cached vs plain, one plan vs another): its derived 2 D U M, else the file's
/// top-level one; `ATRANK_TOLERANCE` overrides.
pub fn request_tolerance(golden: &Golden, req: &GoldenRequest) -> f64 {
    tolerance_override()
        .or(req.tolerance)
        .unwrap_or(golden.tolerance)
}

/// The tolerance for two float32 evaluations of a request that is not in the golden file
/// (`bound_any_request`); `ATRANK_TOLERANCE` overrides. Panics when the file has none.
pub fn any_request_tolerance(golden: &Golden) -> f64 {
    tolerance_override()
        .or(golden.bound_any_request)
        .expect("golden.json has no bound_any_request (re-export the package)")
}

/// The ONNX Runtime library for tests: `ATRANK_ORT_LIB`. Without it the ORT half of a test is
/// skipped with a message, unless `ATRANK_REQUIRE_ORT=1` (set by the test command), which makes
/// a missing library a failure.
pub fn ort_library() -> Option<PathBuf> {
    path_required_with_ort("ATRANK_ORT_LIB", "ONNX Runtime")
}

/// The path in environment variable `var`. Unset: `None` with a message that `what` is
/// skipped, or a panic under `ATRANK_REQUIRE_ORT=1` (the test command), where it must be set.
pub fn path_required_with_ort(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("ATRANK_REQUIRE_ORT").as_deref() == Ok("1") => {
            panic!("ATRANK_REQUIRE_ORT=1 but {var} is not set")
        }
        None => {
            eprintln!("skipping {what}: {var} is not set");
            None
        }
    }
}

/// Runs every golden request of `package` through `score` and checks the trainer's scores.
/// Returns the max absolute difference seen.
pub fn check_golden(
    package: &Path,
    label: &str,
    mut score: impl FnMut(&GoldenRequest) -> Vec<f32>,
) -> f64 {
    let golden = read_golden(package);
    assert!(
        !golden.requests.is_empty(),
        "{}: golden.json has no requests",
        package.display()
    );
    let mut max_diff = 0f64;
    let mut max_tol = 0f64;
    for req in &golden.requests {
        let tol = request_tolerance(&golden, req);
        max_tol = max_tol.max(tol);
        let got = score(req);
        assert_eq!(
            got.len(),
            req.scores.len(),
            "{label} {}: wrong number of scores",
            req.name
        );
        for (k, (g, want)) in got.iter().zip(&req.scores).enumerate() {
            assert!(g.is_finite(), "{label} {}: score {k} is {g}", req.name);
            let d = (f64::from(*g) - f64::from(*want)).abs();
            assert!(
                d <= tol,
                "{label} {} candidate {k} ({}): got {g}, trainer {want}, |diff| {d:e} > {tol:e}",
                req.name,
                req.candidates[k]
            );
            max_diff = max_diff.max(d);
        }
    }
    eprintln!(
        "{label} on {}: {} requests, max |diff| {max_diff:.3e} (tolerances up to {max_tol:.3e})",
        package.display(),
        golden.requests.len()
    );
    max_diff
}

/// Feature pairs of every behavior, kept alive while [`borrow_behaviors`]'s result borrows them.
pub fn feature_pairs(behaviors: &[GoldenBehavior]) -> Vec<Vec<(&str, &str)>> {
    behaviors.iter().map(|b| b.feature_pairs()).collect()
}

/// Golden behaviors as borrowed [`atrank::Behavior`]s (`features` from [`feature_pairs`]).
pub fn borrow_behaviors<'a>(
    behaviors: &'a [GoldenBehavior],
    features: &'a [Vec<(&'a str, &'a str)>],
) -> Vec<atrank::Behavior<'a>> {
    behaviors
        .iter()
        .zip(features)
        .map(|(b, f)| atrank::Behavior {
            group: b.group.as_deref(),
            id: &b.id,
            category: b.category.as_deref(),
            features: f,
            action: b.action.as_deref(),
            timestamp: b.timestamp,
        })
        .collect()
}

/// Builds the borrowed [`atrank::Request`] for a golden request's raw parts and hands it to
/// `f` (the behaviors borrow from `behaviors`, so they cannot outlive this call).
pub fn with_request<R>(
    behaviors: &[GoldenBehavior],
    candidates: &[String],
    request_time: i64,
    f: impl FnOnce(&atrank::Request<'_>) -> R,
) -> R {
    let features = feature_pairs(behaviors);
    let behaviors = borrow_behaviors(behaviors, &features);
    let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
    f(&atrank::Request {
        behaviors: &behaviors,
        candidates: &candidates,
        request_time,
    })
}

/// Scores a golden request on `model`, panicking with the request's name on error.
pub fn score_golden(model: &atrank::Model, req: &GoldenRequest) -> Vec<f32> {
    with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
        model.score(r)
    })
    .unwrap_or_else(|e| panic!("{}: {e}", req.name))
}

/// A copy of a package in a fresh temporary directory, removed on drop.
pub struct TempPackage(pub PathBuf);

impl Drop for TempPackage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl AsRef<Path> for TempPackage {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempPackage {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

/// Copies the package `src` (files copied, not linked) to a fresh directory named after `tag`.
pub fn copy_package(src: &Path, tag: &str) -> TempPackage {
    let dst = std::env::temp_dir().join(format!("atrank-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(src, &dst);
    TempPackage(dst)
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

pub fn read_spec(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("spec.json")).unwrap()).unwrap()
}

pub fn write_spec(dir: &Path, spec: &serde_json::Value) {
    std::fs::write(
        dir.join("spec.json"),
        serde_json::to_string_pretty(spec).unwrap(),
    )
    .unwrap();
}

/// Replaces package file `rel` and records its new size and SHA-256 in the manifest.
pub fn replace_file(dir: &Path, rel: &str, bytes: &[u8]) {
    std::fs::write(dir.join(rel), bytes).unwrap();
    let mut spec = read_spec(dir);
    spec["files"][rel] =
        serde_json::json!({"sha256": atrank::package::sha256_hex(bytes), "bytes": bytes.len()});
    write_spec(dir, &spec);
}

/// A copy of package `src` without the split graphs: `graph.encoder` and `graph.scorer`
/// removed from the spec and its manifest, their files deleted (what a v3 exporter writes
/// for a model it does not split; `tables.bin` keeps the shared tables).
pub fn package_without_split(src: &Path, tag: &str) -> TempPackage {
    let dir = copy_package(src, tag);
    let mut spec = read_spec(&dir);
    for part in ["encoder", "scorer"] {
        let file = spec["graph"][part]["file"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no graph.{part}", src.display()))
            .to_owned();
        spec["graph"].as_object_mut().unwrap().remove(part);
        spec["files"].as_object_mut().unwrap().remove(&file);
        std::fs::remove_file(dir.join(&file)).unwrap();
    }
    write_spec(&dir, &spec);
    dir
}

/// Whether the package's spec names the split graphs (`graph.encoder`, `graph.scorer`).
pub fn has_split(package: &Path) -> bool {
    read_spec(package)["graph"].get("encoder").is_some()
}

/// `n`, the number of keys, read from an atv file's header (docs/package-format-v3.md, "The
/// atv file": magic `ATRVOC01`, then `n` as u64 little-endian), independently of the runtime.
pub fn atv_len(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"ATRVOC01", "{}", path.display());
    u64::from_le_bytes(bytes[8..16].try_into().unwrap())
}

/// A fresh, empty scratch directory `<target tmp>/<suite>/<name>` for a test binary's files.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(suite)
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
