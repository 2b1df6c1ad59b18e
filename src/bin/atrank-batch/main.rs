//! `atrank-batch`: offline batch scoring. Reads requests from Parquet, JSONL or CSV shards,
//! scores them on N threads with one shared [`atrank::Model`], and writes one Parquet or CSV
//! output per shard, in input order, with an `error` column for rows that could not be scored.
//! See `docs/batch-tool.md`.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod input;
mod output;
#[path = "../common/owned.rs"]
mod owned;
mod score;
mod stats;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use atrank::{Backend, LoadOptions, Model};
use input::{InputFormat, Row};
use output::{OutputFormat, ShardWriter};
use score::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Tract,
    Ort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InputFormatArg {
    Parquet,
    Jsonl,
    Csv,
}

/// Offline batch scoring with an atrank model package.
///
/// Each input file is a shard; each shard gets one output file, written to a temporary name and
/// renamed when complete. Shards whose output already exists are skipped (resume), unless
/// --overwrite. Rows keep their input order whatever --threads is. A row that cannot be scored
/// gets a message in the `error` column; the run goes on.
#[derive(Debug, Parser)]
#[command(name = "atrank-batch", version)]
struct Args {
    /// The model package directory (spec.json, model.onnx, ...).
    #[arg(long, short = 'm')]
    model: PathBuf,

    /// Input shards: files (.parquet, .jsonl/.ndjson/.json, .csv) and/or directories (their
    /// files with those extensions, sorted by name). A shell glob expands to several files.
    #[arg(long, short = 'i', required = true, num_args = 1..)]
    input: Vec<PathBuf>,

    /// Output: a file ending in .parquet or .csv when there is exactly one input file;
    /// otherwise a directory that gets `<shard name>.<format>` per shard.
    #[arg(long, short = 'o')]
    output: PathBuf,

    /// Output format for a directory output (a file output's extension decides).
    #[arg(long, value_enum, default_value = "parquet")]
    format: OutputFormat,

    /// Input format for every input (default: by file extension).
    #[arg(long, value_enum)]
    input_format: Option<InputFormatArg>,

    /// Key column(s) passed through to the output, e.g. --key request_id --key user.
    #[arg(long, default_values_t = vec!["request_id".to_string()])]
    key: Vec<String>,

    /// Scoring threads, sharing one model.
    #[arg(long, short = 't', default_value_t = default_threads())]
    threads: usize,

    /// Requests per `Model::score_batch` call (rows per chunk); the model splits a call into
    /// graph runs of at most --batch-rows candidate rows.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,

    /// The most candidate rows one graph run takes (`LoadOptions::batch_rows`; 0: no row
    /// limit). A request with more candidates runs alone.
    #[arg(long, default_value_t = atrank::backend::DEFAULT_BATCH_ROWS)]
    batch_rows: usize,

    /// The inference backend.
    #[arg(long, value_enum, default_value = "tract")]
    backend: BackendArg,

    /// ONNX Runtime sessions for --backend ort (default: one per thread, at most 64; calls on
    /// one session are serialised, so fewer sessions than threads limits scaling).
    #[arg(long)]
    sessions: Option<usize>,

    /// ONNX Runtime library for --backend ort (default: ATRANK_ORT_LIB, ORT_DYLIB_PATH, then
    /// libonnxruntime.so).
    #[arg(long)]
    ort_lib: Option<PathBuf>,

    /// Rescore shards whose output exists (default: skip them).
    #[arg(long)]
    overwrite: bool,

    /// No progress bar and no summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One planned shard: where it comes from and where its output goes.
#[derive(Debug)]
struct Plan {
    input: PathBuf,
    format: InputFormat,
    output: PathBuf,
    out_format: OutputFormat,
}

#[derive(Debug, Default)]
struct Totals {
    shards_done: usize,
    shards_skipped: usize,
    shards_failed: usize,
    rows: u64,
    row_errors: u64,
    scores: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(t) if t.shards_failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("atrank-batch: {e}");
            ExitCode::from(2)
        }
    }
}

fn input_format(args: &Args, path: &Path) -> Option<InputFormat> {
    match args.input_format {
        Some(InputFormatArg::Parquet) => Some(InputFormat::Parquet),
        Some(InputFormatArg::Jsonl) => Some(InputFormat::Jsonl),
        Some(InputFormatArg::Csv) => Some(InputFormat::Csv),
        None => InputFormat::from_path(path),
    }
}

fn plan(args: &Args) -> Result<Vec<Plan>, String> {
    let mut files = Vec::new();
    let mut from_dir = false;
    for p in &args.input {
        if p.is_dir() {
            from_dir = true;
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot list {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && !f
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                        && input_format(args, f).is_some()
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(format!("no such input file or directory: {}", p.display()));
        }
    }
    if files.is_empty() {
        return Err("no input files".into());
    }
    let single = !from_dir && files.len() == 1 && OutputFormat::from_path(&args.output).is_some();
    let mut plans = Vec::new();
    let mut seen = BTreeMap::new();
    for f in files {
        let format = input_format(args, &f).ok_or_else(|| {
            format!(
                "{}: unknown input format (use .parquet, .jsonl or .csv, or --input-format)",
                f.display()
            )
        })?;
        let (output, out_format) = if single {
            let of = OutputFormat::from_path(&args.output).unwrap_or(args.format);
            (args.output.clone(), of)
        } else {
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = args
                .output
                .join(format!("{stem}.{}", args.format.extension()));
            (out, args.format)
        };
        if let Some(other) = seen.insert(output.clone(), f.clone()) {
            return Err(format!(
                "{} and {} would both write {}",
                other.display(),
                f.display(),
                output.display()
            ));
        }
        plans.push(Plan {
            input: f,
            format,
            output,
            out_format,
        });
    }
    Ok(plans)
}

fn run(args: &Args) -> Result<Totals, String> {
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    if let Some(k) = args
        .key
        .iter()
        .find(|k| output::RESERVED.contains(&k.as_str()))
    {
        return Err(format!(
            "key column {k:?} clashes with an output column ({})",
            output::RESERVED.join(", ")
        ));
    }
    let plans = plan(args)?;
    let single = plans.len() == 1 && OutputFormat::from_path(&args.output).is_some();
    if !single {
        std::fs::create_dir_all(&args.output)
            .map_err(|e| format!("cannot create {}: {e}", args.output.display()))?;
    }

    let mut options = LoadOptions::new(match args.backend {
        BackendArg::Tract => Backend::Tract,
        BackendArg::Ort => Backend::Ort,
    });
    options.intra_threads = 1;
    options.sessions = args
        .sessions
        .unwrap_or_else(|| args.threads.min(atrank::backend::MAX_SESSIONS));
    options.cache_capacity = 0;
    options.batch_rows = args.batch_rows;
    options.ort_library = args.ort_lib.clone();
    let model = Model::load_with(&args.model, &options)
        .map_err(|e| format!("cannot load {}: {e}", args.model.display()))?;

    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos} rows [{elapsed_precise}] {per_sec} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b
    };

    let start = Instant::now();
    let mut totals = Totals::default();
    for p in &plans {
        if p.output.exists() && !args.overwrite {
            totals.shards_skipped += 1;
            if !args.quiet {
                bar.suspend(|| {
                    eprintln!(
                        "atrank-batch: {} exists, skipping {}",
                        p.output.display(),
                        p.input.display()
                    )
                });
            }
            continue;
        }
        bar.set_message(p.input.display().to_string());
        match run_shard(args, &model, p, &bar) {
            Ok(s) => {
                totals.shards_done += 1;
                totals.rows += s.rows;
                totals.row_errors += s.row_errors;
                totals.scores += s.scores;
            }
            Err(e) => {
                totals.shards_failed += 1;
                bar.suspend(|| eprintln!("atrank-batch: {}: {e}", p.input.display()));
            }
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "atrank-batch: {} shard(s) scored, {} skipped, {} failed; {} rows ({} with errors), \
             {} candidate scores in {secs:.3} s: {:.1} rows/s, {:.1} scores/s ({} thread(s), {}, \
             batch {})",
            totals.shards_done,
            totals.shards_skipped,
            totals.shards_failed,
            totals.rows,
            totals.row_errors,
            totals.scores,
            totals.rows as f64 / secs.max(1e-9),
            totals.scores as f64 / secs.max(1e-9),
            args.threads,
            model.serving().name(),
            args.batch_size,
        );
        for line in stats::summary(&model) {
            eprintln!("atrank-batch: {line}");
        }
    }
    Ok(totals)
}

#[derive(Debug, Default)]
struct ShardStats {
    rows: u64,
    row_errors: u64,
    scores: u64,
}

/// Scores one shard: this thread reads chunks, `threads` workers score them, and a writer
/// thread writes them back in chunk order.
fn run_shard(
    args: &Args,
    model: &Model,
    p: &Plan,
    bar: &ProgressBar,
) -> Result<ShardStats, String> {
    let shard = input::open(&p.input, p.format, &args.key, args.batch_size)?;
    if let Some(n) = shard.rows_hint {
        bar.set_length(bar.length().unwrap_or(0) + n);
    }
    let schema = output::schema(p.out_format, &args.key, &shard.key_kinds);
    let writer = ShardWriter::create(&p.output, p.out_format, &schema)?;
    let threads = args.threads;
    let failed = AtomicBool::new(false);

    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, Vec<Row>)>(threads * 2);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<Row>, Vec<Outcome>)>();

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((idx, rows)) = job else { return };
                let outcomes = score::score_chunk(model, &rows);
                if done_tx.send((idx, rows, outcomes)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);

        let failed = &failed;
        let schema = &schema;
        let kinds = &shard.key_kinds;
        let out_format = p.out_format;
        let writer_thread = scope.spawn(move || -> Result<ShardStats, String> {
            let mut writer = writer;
            let mut stats = ShardStats::default();
            let mut pending: BTreeMap<usize, (Vec<Row>, Vec<Outcome>)> = BTreeMap::new();
            let mut next = 0usize;
            let mut result = Ok(());
            for (idx, rows, outcomes) in done_rx {
                pending.insert(idx, (rows, outcomes));
                while let Some((rows, outcomes)) = pending.remove(&next) {
                    next += 1;
                    if result.is_err() {
                        continue;
                    }
                    stats.rows += rows.len() as u64;
                    for o in &outcomes {
                        match o {
                            Ok(s) => stats.scores += s.len() as u64,
                            Err(_) => stats.row_errors += 1,
                        }
                    }
                    result = output::batch(schema, out_format, kinds, &rows, &outcomes)
                        .and_then(|b| writer.write(&b));
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    bar.inc(rows.len() as u64);
                }
            }
            result?;
            if failed.load(Ordering::Relaxed) {
                // The reader failed: the writer is dropped, removing its temporary file.
                return Err(String::new());
            }
            writer.finish()?;
            Ok(stats)
        });

        let mut read_result = Ok(());
        for (idx, chunk) in shard.chunks.enumerate() {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            match chunk {
                Ok(rows) => {
                    if job_tx.send((idx, rows)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    read_result = Err(e);
                    break;
                }
            }
        }
        drop(job_tx);
        let written = writer_thread
            .join()
            .unwrap_or_else(|_| Err("the writer thread panicked".into()));
        match (read_result, written) {
            (Err(e), _) => Err(e),
            (Ok(()), w) => w,
        }
    })
}
