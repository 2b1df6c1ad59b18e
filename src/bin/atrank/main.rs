//! `atrank`: command-line tools around a model package. `atrank score` scores JSON requests
//! against a package and prints the scores, for debugging what a service sends.
//! See the README ("Scoring a request from the shell").
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/owned.rs"]
mod owned;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};

use owned::{Borrowed, OwnedBehavior, OwnedRequest};

use atrank::{Backend, LoadOptions, Model, Request};

#[derive(Debug, Parser)]
#[command(
    name = "atrank",
    version,
    about = "Command-line tools around an atrank model package"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Tract,
    Ort,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score requests against a package and print one JSON line per request.
    ///
    /// Input: one JSON request, a JSON array of requests, or JSON lines (one request per
    /// line), from a file or `-` (standard input). A request is
    /// `{"request_time": T, "behaviors": [...], "candidates": ["id", ...]}` with behaviors
    /// `{"id", "timestamp", "action"?, "group"?, "category"?, "features"?: {name: value}}`,
    /// as in the batch tool's JSONL input. Output per request, in input order:
    /// `{"scores": [...]}` or `{"error": {"code": N, "kind": "...", "message": "..."}}`,
    /// with the request's `name` and `request_id` fields copied when present. Exit status 0
    /// when every request scored, 1 when some failed, 2 when the input or the package could
    /// not be read at all.
    Score {
        /// The model package directory (spec.json, model.onnx, ...).
        #[arg(long, short = 'm')]
        model: PathBuf,
        /// Inference engine (tract needs no library).
        #[arg(long, value_enum, default_value = "tract")]
        backend: BackendArg,
        /// ONNX Runtime library for --backend ort (default: ATRANK_ORT_LIB, ORT_DYLIB_PATH,
        /// then libonnxruntime.so).
        #[arg(long)]
        ort_lib: Option<PathBuf>,
        /// Score candidates the request's own target-group behaviors name as -infinity
        /// (`LoadOptions::exclude_seen`), written as `null` (JSON has no infinity).
        #[arg(long)]
        exclude_seen: bool,
        /// Requests: a file, or `-` for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
    },
}

/// One request as JSON (unknown fields are ignored).
#[derive(Debug, Deserialize)]
struct JsonRequest {
    request_time: i64,
    #[serde(default)]
    behaviors: Vec<JsonBehavior>,
    candidates: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct JsonBehavior {
    #[serde(default)]
    group: Option<String>,
    id: Value,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    features: BTreeMap<String, String>,
    #[serde(default)]
    action: Option<String>,
    timestamp: i64,
}

/// An id given as a JSON string or number (a number is taken as its text).
fn id_text(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "{what}: expected a string or a number, got {other}"
        )),
    }
}

/// The requests of the input text: a JSON array of requests, or a stream of JSON values
/// (one request, or JSON lines). A value that is not valid JSON ends the stream with an error.
fn requests(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err("expected a JSON array of requests".into()),
            Err(e) => Err(format!("not valid JSON: {e}")),
        };
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
        .map(|(k, v)| v.map_err(|e| format!("request {k}: not valid JSON: {e}")))
        .collect()
}

/// Scores one request value: its scores, or a JSON error object.
fn score_one(model: &Model, value: &Value) -> Result<Vec<f32>, Value> {
    let invalid =
        |message: String| json!({"code": 2, "kind": "InvalidArgument", "message": message});
    let req: JsonRequest =
        serde_json::from_value(value.clone()).map_err(|e| invalid(format!("request: {e}")))?;
    let ids = req
        .behaviors
        .iter()
        .enumerate()
        .map(|(k, b)| id_text(&b.id, &format!("behaviors[{k}].id")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let candidates = req
        .candidates
        .iter()
        .enumerate()
        .map(|(k, c)| id_text(c, &format!("candidates[{k}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let owned = OwnedRequest {
        behaviors: req
            .behaviors
            .into_iter()
            .zip(ids)
            .map(|(b, id)| OwnedBehavior {
                group: b.group,
                id,
                category: b.category,
                features: b.features.into_iter().collect(),
                action: b.action,
                timestamp: b.timestamp,
            })
            .collect(),
        candidates,
        request_time: req.request_time,
    };
    let borrowed = Borrowed::new(&owned);
    let behaviors = borrowed.behaviors(&owned);
    let request = Request {
        behaviors: &behaviors,
        candidates: &borrowed.candidates,
        request_time: owned.request_time,
    };
    model.score(&request).map_err(|e| {
        json!({"code": e.code() as u32, "kind": format!("{:?}", e.code()), "message": e.to_string()})
    })
}

fn run_score(
    model_dir: PathBuf,
    backend: BackendArg,
    ort_lib: Option<PathBuf>,
    exclude_seen: bool,
    input: PathBuf,
) -> ExitCode {
    let text = if input.as_os_str() == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("atrank score: cannot read standard input: {e}");
            return ExitCode::from(2);
        }
        s
    } else {
        match std::fs::read_to_string(&input) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("atrank score: cannot read {}: {e}", input.display());
                return ExitCode::from(2);
            }
        }
    };
    let values = match requests(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("atrank score: {}: {e}", input.display());
            return ExitCode::from(2);
        }
    };
    let mut options = LoadOptions::new(match backend {
        BackendArg::Tract => Backend::Tract,
        BackendArg::Ort => Backend::Ort,
    });
    options.ort_library = ort_lib;
    options.exclude_seen = exclude_seen;
    let model = match Model::load_with(&model_dir, &options) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("atrank score: cannot load {}: {e}", model_dir.display());
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for value in &values {
        let mut line = serde_json::Map::new();
        for key in ["name", "request_id"] {
            if let Some(v) = value.get(key) {
                line.insert(key.to_string(), v.clone());
            }
        }
        match score_one(&model, value) {
            Ok(scores) => {
                line.insert("scores".into(), json!(scores));
            }
            Err(error) => {
                failed += 1;
                line.insert("error".into(), error);
            }
        }
        if let Err(e) = writeln!(out, "{}", Value::Object(line)) {
            eprintln!("atrank score: cannot write the output: {e}");
            return ExitCode::from(2);
        }
    }
    if failed > 0 {
        eprintln!("atrank score: {failed} of {} requests failed", values.len());
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Score {
            model,
            backend,
            ort_lib,
            exclude_seen,
            input,
        } => run_score(model, backend, ort_lib, exclude_seen, input),
    }
}
