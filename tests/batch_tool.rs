//! The `atrank-batch` binary, run as a user would: inputs in all three formats generated from
//! the packages' golden requests, scores checked against the trainer's (golden.json, not
//! atrank), plus bad rows, output order across thread counts, sharding, and resume.
#![cfg(feature = "batch")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use serde_json::{json, Value};

use common::{read_golden, request_tolerance, Golden, GoldenRequest};

const BIN: &str = env!("CARGO_BIN_EXE_atrank-batch");

fn scratch(name: &str) -> PathBuf {
    common::scratch("batch_tool", name)
}

fn behaviors_json(req: &GoldenRequest) -> Value {
    Value::Array(
        req.behaviors
            .iter()
            .map(|b| {
                let mut o = json!({"id": b.id, "action": b.action, "timestamp": b.timestamp});
                if let Some(g) = &b.group {
                    o["group"] = json!(g);
                }
                if let Some(c) = &b.category {
                    o["category"] = json!(c);
                }
                if !b.features.is_empty() {
                    o["features"] = json!(b.features);
                }
                o
            })
            .collect(),
    )
}

/// One input row as a JSON object (`request_id` is an integer).
fn row_json(id: i64, req: &GoldenRequest) -> Value {
    json!({
        "request_id": id,
        "behaviors": behaviors_json(req),
        "candidates": req.candidates,
        "request_time": req.request_time,
    })
}

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// CSV through arrow-csv: every column text, `behaviors` and `candidates` as JSON cells.
fn write_csv(path: &Path, rows: &[Value]) {
    let cell = |r: &Value, k: &str| -> Option<String> {
        match &r[k] {
            Value::Null => None,
            Value::String(s) if k != "behaviors" && k != "candidates" => Some(s.clone()),
            v => Some(v.to_string()),
        }
    };
    let cols = ["request_id", "behaviors", "candidates", "request_time"];
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = cols
        .iter()
        .map(|c| Arc::new(rows.iter().map(|r| cell(r, c)).collect::<StringArray>()) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema, arrays).unwrap();
    let mut w = arrow_csv::WriterBuilder::new()
        .with_header(true)
        .build(std::fs::File::create(path).unwrap());
    w.write(&batch).unwrap();
}

/// Parquet with nested columns: behaviors list<struct{group, id, category, action, timestamp,
/// features map<string,string>}>, candidates list<string>, request_id int64.
fn write_parquet(path: &Path, rows: &[Value]) {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    );
    let behavior = DataType::Struct(Fields::from(vec![
        Field::new("group", DataType::Utf8, true),
        Field::new("id", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("action", DataType::Utf8, true),
        Field::new("timestamp", DataType::Int64, true),
        Field::new("features", DataType::Map(Arc::new(entries), false), true),
    ]));
    let schema = Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Int64, true),
        Field::new(
            "behaviors",
            DataType::List(Arc::new(Field::new("element", behavior, true))),
            true,
        ),
        Field::new(
            "candidates",
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
            true,
        ),
        Field::new("request_time", DataType::Int64, true),
    ]));
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .unwrap();
    decoder.serialize(rows).unwrap();
    let batch = decoder
        .flush()
        .unwrap()
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&schema)));
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fmt {
    Jsonl,
    Csv,
    Parquet,
}

impl Fmt {
    const ALL: [Fmt; 3] = [Fmt::Jsonl, Fmt::Csv, Fmt::Parquet];
    fn ext(self) -> &'static str {
        match self {
            Fmt::Jsonl => "jsonl",
            Fmt::Csv => "csv",
            Fmt::Parquet => "parquet",
        }
    }
    fn write(self, path: &Path, rows: &[Value]) {
        match self {
            Fmt::Jsonl => write_jsonl(path, rows),
            Fmt::Csv => write_csv(path, rows),
            Fmt::Parquet => write_parquet(path, rows),
        }
    }
}

/// One output row, read back.
#[derive(Debug, Clone, PartialEq)]
struct OutRow {
    row: i64,
    key: Option<String>,
    candidates: Option<Vec<String>>,
    scores: Option<Vec<f32>>,
    error: Option<String>,
}

fn text(arr: &dyn Array, i: usize) -> Option<String> {
    if arr.is_null(i) {
        return None;
    }
    Some(match arr.data_type() {
        DataType::Utf8 => arr.as_string::<i32>().value(i).to_owned(),
        DataType::Int64 => arr.as_primitive::<Int64Type>().value(i).to_string(),
        other => panic!("unexpected type {other}"),
    })
}

fn read_output(path: &Path) -> Vec<OutRow> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    if path.extension().unwrap() == "parquet" {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            let (row, key, cands, scores, error) = (
                col("row"),
                col("request_id"),
                col("candidates"),
                col("scores"),
                col("error"),
            );
            for i in 0..b.num_rows() {
                out.push(OutRow {
                    row: row.as_primitive::<Int64Type>().value(i),
                    key: text(key.as_ref(), i),
                    candidates: (!cands.is_null(i)).then(|| {
                        let v = cands.as_list::<i32>().value(i);
                        (0..v.len()).map(|k| text(v.as_ref(), k).unwrap()).collect()
                    }),
                    scores: (!scores.is_null(i)).then(|| {
                        let v = scores.as_list::<i32>().value(i);
                        v.as_primitive::<Float32Type>().values().to_vec()
                    }),
                    error: text(error.as_ref(), i),
                });
            }
        }
    } else {
        let (schema, _) = arrow_csv::reader::Format::default()
            .with_header(true)
            .infer_schema(std::fs::File::open(path).unwrap(), Some(1))
            .unwrap();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(
            names,
            ["row", "request_id", "candidates", "scores", "error"],
            "{}",
            path.display()
        );
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = arrow_csv::ReaderBuilder::new(schema)
            .with_header(true)
            .build(file)
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            for i in 0..b.num_rows() {
                out.push(OutRow {
                    row: text(col("row").as_ref(), i).unwrap().parse().unwrap(),
                    key: text(col("request_id").as_ref(), i),
                    candidates: text(col("candidates").as_ref(), i)
                        .map(|s| serde_json::from_str(&s).unwrap()),
                    scores: text(col("scores").as_ref(), i)
                        .map(|s| serde_json::from_str(&s).unwrap()),
                    error: text(col("error").as_ref(), i),
                });
            }
        }
    }
    out
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let out = Command::new(BIN)
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run atrank-batch");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Checks `rows[i]` against golden request `golden[i % golden.len()]` for the rows in `good`,
/// each within its request's derived tolerance (`file`'s, docs/tolerances.md).
fn check_scores(label: &str, rows: &[OutRow], golden: &[GoldenRequest], file: &Golden) -> f64 {
    let mut max = 0f64;
    for (r, g) in rows.iter().zip(golden) {
        let tol = request_tolerance(file, g);
        assert_eq!(r.error, None, "{label} row {}: unexpected error", r.row);
        assert_eq!(
            r.candidates.as_ref(),
            Some(&g.candidates),
            "{label} row {}",
            r.row
        );
        let s = r.scores.as_ref().unwrap();
        assert_eq!(s.len(), g.scores.len(), "{label} row {}", r.row);
        for (k, (got, want)) in s.iter().zip(&g.scores).enumerate() {
            let d = (f64::from(*got) - f64::from(*want)).abs();
            assert!(
                d <= tol,
                "{label} {} cand {k}: got {got}, trainer {want}, |diff| {d:e} > {tol:e}",
                g.name
            );
            max = max.max(d);
        }
    }
    max
}

fn golden_in_every_format(backend: &str, extra: &[&str]) {
    for pkg in common::packages() {
        let golden = read_golden(&pkg);
        let rows: Vec<Value> = golden
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| row_json(i as i64, r))
            .collect();
        let dir = scratch(&format!(
            "golden-{backend}-{}",
            pkg.file_name().unwrap().to_string_lossy()
        ));
        for (n, fmt) in Fmt::ALL.into_iter().enumerate() {
            let input = dir.join(format!("in.{}", fmt.ext()));
            fmt.write(&input, &rows);
            // Both output formats, alternating; a batch size that splits the requests.
            let out_ext = if n % 2 == 0 { "parquet" } else { "csv" };
            let output = dir.join(format!("out-{}.{out_ext}", fmt.ext()));
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
                &"--model",
                &pkg,
                &"--input",
                &input,
                &"--output",
                &output,
                &"--backend",
                &backend,
                &"--threads",
                &"2",
                &"--batch-size",
                &"5",
            ];
            for e in extra {
                args.push(e);
            }
            let o = run(&args);
            assert!(o.status.success(), "{backend} {fmt:?}: {}", stderr(&o));
            // The model's counters at the end: every row went through score_batch, none
            // failed, so no row was scored alone.
            let err = stderr(&o);
            assert!(
                err.contains("atrank-batch: score_batch: ")
                    && err.contains(" 0 failed; latency p50 ")
                    && !err.contains("atrank-batch: score: "),
                "{backend} {fmt:?}: no or wrong stats summary: {err}"
            );
            let out = read_output(&output);
            assert_eq!(out.len(), rows.len(), "{backend} {fmt:?}: row count");
            for (i, r) in out.iter().enumerate() {
                assert_eq!(r.row, i as i64);
                assert_eq!(r.key.as_deref(), Some(i.to_string().as_str()));
            }
            let label = format!("{backend} {fmt:?}->{out_ext} {}", pkg.display());
            let max = check_scores(&label, &out, &golden.requests, &golden);
            eprintln!("{label}: max |diff| vs trainer {max:.3e}");
        }
    }
}

#[test]
fn tract_scores_match_the_trainer_in_every_format() {
    golden_in_every_format("tract", &[]);
}

/// `--batch-rows 1`: every request in a graph run of its own, the same scores within tolerance.
#[test]
fn one_request_per_graph_run_matches_the_trainer() {
    golden_in_every_format("tract", &["--batch-rows", "1"]);
}

#[test]
fn ort_scores_match_the_trainer_in_every_format() {
    let Some(lib) = common::ort_library() else {
        return;
    };
    let lib = lib.to_string_lossy().into_owned();
    golden_in_every_format("ort", &["--ort-lib", &lib]);
}

/// Bad rows of many kinds between good ones, in one chunk: each bad row gets an error, the good
/// rows keep their trainer scores, nothing is lost.
#[test]
fn bad_rows_get_an_error_and_the_rest_is_scored() {
    let pkg = common::repo().join("tests/fixtures/tiny-multigroup");
    let golden = read_golden(&pkg);
    let g = &golden.requests;
    let good = |i: usize| row_json(i as i64, &g[i]);
    let too_many: Vec<String> = (0..10_001).map(|k| format!("i{k}")).collect();
    let mut unknown_group = row_json(100, &g[0]);
    unknown_group["behaviors"][0]["group"] = json!("no-such-group");
    let mut no_timestamp = row_json(101, &g[1]);
    no_timestamp["behaviors"][1]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    let mut too_many_row = row_json(102, &g[2]);
    too_many_row["candidates"] = json!(too_many);
    let mut empty = row_json(103, &g[3]);
    empty["candidates"] = json!([]);
    let mut no_time = row_json(104, &g[4]);
    no_time["request_time"] = Value::Null;
    let mut no_candidates = row_json(105, &g[5]);
    no_candidates["candidates"] = Value::Null;
    // (row, expected error fragment); the good rows are golden requests 0..3.
    let bad: Vec<(Value, &str)> = vec![
        (unknown_group, "no-such-group"),
        (no_timestamp, "timestamp"),
        (too_many_row, "10001 candidates exceed"),
        (empty, "candidates is empty"),
        (no_time, "request_time"),
        (no_candidates, "candidates"),
    ];
    let mut rows = Vec::new();
    let mut expect: Vec<Option<(usize, &str)>> = Vec::new(); // Some(golden idx) or error
    let mut errs = Vec::new();
    for (k, (b, frag)) in bad.into_iter().enumerate() {
        rows.push(good(k));
        expect.push(None);
        errs.push(k);
        rows.push(b);
        expect.push(Some((0, frag)));
    }
    for fmt in Fmt::ALL {
        let dir = scratch(&format!("bad-rows-{}", fmt.ext()));
        let input = dir.join(format!("in.{}", fmt.ext()));
        fmt.write(&input, &rows);
        let mut extra_frag = None;
        if fmt == Fmt::Jsonl {
            // A line that is not JSON at all.
            let mut t = std::fs::read_to_string(&input).unwrap();
            t.push_str("{\"request_id\": 77, \"behaviors\": [}\n");
            std::fs::write(&input, t).unwrap();
            extra_frag = Some("line 13");
        }
        if fmt == Fmt::Csv {
            // A behaviors cell that is not JSON.
            let mut t = std::fs::read_to_string(&input).unwrap();
            t.push_str("77,not json,\"[\"\"i1\"\"]\",5\n");
            std::fs::write(&input, t).unwrap();
            extra_frag = Some("behaviors is not a JSON array");
        }
        let output = dir.join("out.parquet");
        let o = run(&[
            &"-m",
            &pkg,
            &"-i",
            &input,
            &"-o",
            &output,
            &"--batch-size",
            &"64",
            &"-t",
            &"2",
        ]);
        assert!(o.status.success(), "{fmt:?}: {}", stderr(&o));
        let out = read_output(&output);
        let n = rows.len() + usize::from(extra_frag.is_some());
        assert_eq!(out.len(), n, "{fmt:?}: rows lost");
        let mut good_k = 0;
        for (i, (r, e)) in out.iter().zip(&expect).enumerate() {
            assert_eq!(r.row, i as i64);
            match e {
                None => {
                    check_scores(
                        &format!("{fmt:?}"),
                        std::slice::from_ref(r),
                        &g[good_k..],
                        &golden,
                    );
                    good_k += 1;
                }
                Some((_, frag)) => {
                    let msg = r.error.as_deref().unwrap_or_else(|| {
                        panic!("{fmt:?} row {i}: no error (scores {:?})", r.scores)
                    });
                    assert!(
                        msg.contains(frag),
                        "{fmt:?} row {i}: {msg:?} lacks {frag:?}"
                    );
                    assert_eq!(r.scores, None, "{fmt:?} row {i}");
                }
            }
        }
        if let Some(frag) = extra_frag {
            let last = out.last().unwrap();
            let msg = last.error.as_deref().unwrap_or("");
            assert!(msg.contains(frag), "{fmt:?}: {msg:?} lacks {frag:?}");
            assert_eq!(last.scores, None);
        }
        let n_bad = errs.len() + usize::from(extra_frag.is_some());
        assert!(
            stderr(&o).contains(&format!("({n_bad} with errors)")),
            "{}",
            stderr(&o)
        );
    }
}

/// The same input, 1 vs 3 threads and small chunks: identical output files.
#[test]
fn output_order_does_not_depend_on_threads() {
    let pkg = common::repo().join("tests/fixtures/tiny-multigroup");
    let golden = read_golden(&pkg);
    let rows: Vec<Value> = (0..5)
        .flat_map(|_| golden.requests.iter())
        .enumerate()
        .map(|(i, r)| row_json(i as i64, r))
        .collect();
    let dir = scratch("order");
    let input = dir.join("in.jsonl");
    write_jsonl(&input, &rows);
    let mut outs = Vec::new();
    for threads in ["1", "3"] {
        for ext in ["csv", "parquet"] {
            let output = dir.join(format!("out-{threads}.{ext}"));
            let o = run(&[
                &"-m",
                &pkg,
                &"-i",
                &input,
                &"-o",
                &output,
                &"-t",
                &threads,
                &"--batch-size",
                &"3",
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            outs.push((output.clone(), std::fs::read(&output).unwrap()));
        }
    }
    assert_eq!(
        outs[0].1, outs[2].1,
        "CSV output differs between 1 and 3 threads"
    );
    let (one, three) = (read_output(&outs[1].0), read_output(&outs[3].0));
    assert_eq!(one.len(), rows.len());
    assert_eq!(one, three, "Parquet output differs between 1 and 3 threads");
    let keys: Vec<String> = (0..rows.len()).map(|i| i.to_string()).collect();
    let got: Vec<String> = three.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(got, keys);
}

fn shard_rows(golden: &[GoldenRequest], shard: usize) -> Vec<Value> {
    golden
        .iter()
        .enumerate()
        .skip(shard)
        .step_by(3)
        .map(|(i, r)| row_json(i as i64, r))
        .collect()
}

/// A directory of shards (one per format): outputs per shard; a rerun skips finished shards,
/// redoes a missing one, and ignores (removes) a stale temporary file.
#[test]
fn sharded_runs_resume() {
    let pkg = common::repo().join("tests/fixtures/tiny");
    let golden = read_golden(&pkg);
    let dir = scratch("resume");
    let (inputs, outputs) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inputs).unwrap();
    for (s, fmt) in Fmt::ALL.into_iter().enumerate() {
        fmt.write(
            &inputs.join(format!("part-{s}.{}", fmt.ext())),
            &shard_rows(&golden.requests, s),
        );
    }
    let go = || {
        run(&[
            &"-m",
            &pkg,
            &"-i",
            &inputs,
            &"-o",
            &outputs,
            &"--batch-size",
            &"4",
        ])
    };
    let o = go();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("3 shard(s) scored, 0 skipped"),
        "{}",
        stderr(&o)
    );
    let out = |s: usize| outputs.join(format!("part-{s}.parquet"));
    let check = |s: usize| {
        let rows = read_output(&out(s));
        let want: Vec<&GoldenRequest> = golden.requests.iter().skip(s).step_by(3).collect();
        assert_eq!(rows.len(), want.len());
        for (r, g) in rows.iter().zip(want) {
            check_scores(
                "resume",
                std::slice::from_ref(r),
                std::slice::from_ref(g),
                &golden,
            );
        }
    };
    (0..3).for_each(check);
    let before: Vec<_> = [0, 2]
        .iter()
        .map(|&s| std::fs::metadata(out(s)).unwrap().modified().unwrap())
        .collect();

    // As if a run was killed while writing shard 1: its output is missing, a partial
    // temporary file of another process is there.
    std::fs::remove_file(out(1)).unwrap();
    let stale = outputs.join(".part-1.parquet.partial-999999");
    std::fs::write(&stale, b"half a parquet file").unwrap();
    let o = go();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 shard(s) scored, 2 skipped"),
        "{}",
        stderr(&o)
    );
    check(1);
    assert!(!stale.exists(), "the stale temporary file was left");
    let after: Vec<_> = [0, 2]
        .iter()
        .map(|&s| std::fs::metadata(out(s)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "finished shards were rewritten");
    let names: Vec<String> = std::fs::read_dir(&outputs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    let o = run(&[
        &"-m",
        &pkg,
        &"-i",
        &inputs,
        &"-o",
        &outputs,
        &"--overwrite",
        &"-q",
    ]);
    assert!(o.status.success());
    (0..3).for_each(check);
}

/// A run killed (SIGKILL) part-way leaves only complete outputs; the rerun finishes the rest.
#[test]
fn a_killed_run_resumes() {
    let pkg = common::repo().join("tests/fixtures/tiny");
    let golden = read_golden(&pkg);
    let dir = scratch("killed");
    let (inputs, outputs) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inputs).unwrap();
    let shards = 12;
    for s in 0..shards {
        let rows: Vec<Value> = (0..20)
            .flat_map(|_| golden.requests.iter())
            .enumerate()
            .map(|(i, r)| row_json(i as i64, r))
            .collect();
        write_jsonl(&inputs.join(format!("s{s:02}.jsonl")), &rows);
    }
    let mut child = Command::new(BIN)
        .args(["-q", "-t", "1", "--batch-size", "8", "-m"])
        .arg(&pkg)
        .arg("-i")
        .arg(&inputs)
        .arg("-o")
        .arg(&outputs)
        .spawn()
        .unwrap();
    // Kill it once the first shard is out (or let it finish if it is that fast).
    let first = outputs.join("s00.parquet");
    loop {
        if first.exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let done: Vec<PathBuf> = std::fs::read_dir(&outputs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(!done.is_empty());
    let n = golden.requests.len() * 20;
    for p in &done {
        assert_eq!(read_output(p).len(), n, "{} is incomplete", p.display());
    }
    let o = run(&[&"-m", &pkg, &"-i", &inputs, &"-o", &outputs]);
    assert!(o.status.success(), "{}", stderr(&o));
    let skipped = format!("{} skipped", done.len());
    assert!(stderr(&o).contains(&skipped), "{}", stderr(&o));
    for s in 0..shards {
        let rows = read_output(&outputs.join(format!("s{s:02}.parquet")));
        assert_eq!(rows.len(), n);
        let want: Vec<_> = (0..20).flat_map(|_| golden.requests.iter()).collect();
        for (r, g) in rows.iter().zip(want) {
            check_scores(
                "killed",
                std::slice::from_ref(r),
                std::slice::from_ref(g),
                &golden,
            );
        }
    }
    let left: Vec<String> = std::fs::read_dir(&outputs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// A shard that cannot be read fails alone: the others are written, the exit status says so,
/// and the failed shard has no output (a rerun retries it).
#[test]
fn an_unreadable_shard_fails_alone() {
    let pkg = common::repo().join("tests/fixtures/tiny");
    let golden = read_golden(&pkg);
    let dir = scratch("bad-shard");
    let (inputs, outputs) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inputs).unwrap();
    write_jsonl(&inputs.join("a.jsonl"), &shard_rows(&golden.requests, 0));
    std::fs::write(inputs.join("b.parquet"), b"PAR1 this is not parquet").unwrap();
    let mut no_key = shard_rows(&golden.requests, 1);
    for r in &mut no_key {
        r.as_object_mut().unwrap().remove("request_id");
    }
    write_jsonl(&inputs.join("c.jsonl"), &no_key);
    let o = run(&[
        &"-m",
        &pkg,
        &"-i",
        &inputs,
        &"-o",
        &outputs,
        &"--format",
        &"csv",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("b.parquet: not a readable Parquet file"),
        "{err}"
    );
    assert!(
        err.contains("1 shard(s) scored, 0 skipped, 2 failed"),
        "{err}"
    );
    assert!(outputs.join("a.csv").exists());
    assert!(!outputs.join("b.csv").exists());
    assert_eq!(
        read_output(&outputs.join("a.csv")).len(),
        shard_rows(&golden.requests, 0).len()
    );
    assert!(
        err.contains("c.jsonl: no key column \"request_id\""),
        "{err}"
    );
    assert!(!outputs.join("c.csv").exists());
}
