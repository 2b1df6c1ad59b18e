//! ONNX external data (`tables.bin`) on both backends: a graph whose embedding table is
//! external (tests/fixtures/external, made by its make.py with the exporter's
//! `external_data.externalize`) loads from a read-only mapping of the file and scores exactly
//! like the same graph with the table inline; hostile references are refused with
//! `InvalidPackage`, naming the tensor and the problem, before any backend parses the graph.

mod common;

use std::path::{Path, PathBuf};

use atrank::backend::onnx_check::{self, Expect, InputType};
use atrank::backend::{load_graph, Backend, ExternalFile, Feed, Fetched, LoadOptions};
use atrank::vocab::LOOKAHEAD;
use atrank::ErrorCode;
use bytes::Bytes;

const ROWS: usize = 100;
const TABLE_BYTES: usize = ROWS * 16 * 4;

fn dir() -> PathBuf {
    common::repo().join("tests/fixtures/external")
}

fn graph(name: &str) -> Bytes {
    Bytes::from(std::fs::read(dir().join(name)).unwrap())
}

/// `tables.bin` as the runtime holds it: a read-only memory map.
fn tables() -> ExternalFile {
    let file = std::fs::File::open(dir().join("tables.bin")).unwrap();
    // SAFETY: a test fixture that nothing modifies while the test runs.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    assert_eq!(map.len(), TABLE_BYTES);
    ExternalFile {
        name: "tables.bin".into(),
        data: Bytes::from_owner(map),
    }
}

fn options(backend: Backend) -> Option<LoadOptions> {
    let mut o = LoadOptions::new(backend);
    if backend == Backend::Ort {
        o.ort_library = Some(common::ort_library()?);
    }
    Some(o)
}

fn run(backend: Backend, file: &str, external: &[ExternalFile]) -> Option<Fetched> {
    let opts = options(backend)?;
    let loaded = load_graph(
        &opts,
        &dir().join(file),
        &graph(file),
        external,
        &["ids".to_owned()],
        &["out".to_owned()],
    )
    .unwrap_or_else(|e| panic!("{backend} {file}: {e}"));
    let ids: Vec<i64> = vec![0, 1, 57, ROWS as i64 - 1, 1];
    let mut out = loaded
        .graph
        .run(&[Feed::I64("ids", &[ids.len()], &ids)], &["out"])
        .unwrap();
    Some(out.remove(0))
}

/// The same weights through the same backend: the outputs are equal bit for bit (the graphs
/// differ only in where the table's bytes are stored).
fn same_as_inline(backend: Backend) {
    let Some(inline) = run(backend, "inline.onnx", &[]) else {
        return;
    };
    let external = run(backend, "model.onnx", &[tables()]).unwrap();
    assert_eq!(inline.shape, vec![5, 8]);
    assert_eq!(external.shape, inline.shape);
    let bits = |f: &Fetched| f.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&external), bits(&inline), "{backend}");
    // Rows 1 and 1 (positions 1 and 4) gather the same row: a check that the ids took effect.
    assert_eq!(external.data[8..16], external.data[32..40]);
    assert_ne!(external.data[0..8], external.data[8..16]);
}

#[test]
fn tract_external_equals_inline() {
    same_as_inline(Backend::Tract);
}

#[test]
fn ort_external_equals_inline() {
    same_as_inline(Backend::Ort);
}

fn expect(rows: usize) -> Expect<'static> {
    Expect {
        inputs: vec![("ids", InputType::I64)],
        outputs: vec!["out"],
        rows: vec![("ids", rows)],
    }
}

const ALLOWED: &[(&str, u64)] = &[("tables.bin", TABLE_BYTES as u64)];

#[test]
fn check_accepts_the_fixture_and_checks_external_table_rows() {
    onnx_check::check("model.onnx", graph("model.onnx"), &expect(ROWS), ALLOWED).unwrap();
    // The Gather table's rows come from its dims, external or not.
    let e = onnx_check::check(
        "model.onnx",
        graph("model.onnx"),
        &expect(ROWS + 1),
        ALLOWED,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidPackage);
    assert!(
        e.to_string().contains("\"table\"") && e.to_string().contains("has 100 rows"),
        "{e}"
    );
    // External data with no file allowed (a package without graph.external_data).
    let e = onnx_check::check("model.onnx", graph("model.onnx"), &expect(ROWS), &[]).unwrap_err();
    assert!(e.to_string().contains("not one of"), "{e}");
}

/// Every hostile fixture and what its message must say.
const HOSTILE: &[(&str, &str)] = &[
    (
        "bad_location.onnx",
        "location \"other.bin\" is not one of the package's external data files",
    ),
    (
        "bad_parent.onnx",
        "location \"../tables.bin\" is a path outside the package",
    ),
    (
        "bad_absolute.onnx",
        "location \"/etc/passwd\" is an absolute path",
    ),
    (
        "bad_unaligned.onnx",
        "offset 4096 is not a multiple of 65536",
    ),
    (
        "bad_length.onnx",
        "length 6396 differs from its shape [100, 16] x 4 bytes = 6400 bytes",
    ),
    ("bad_overflow.onnx", "= more than 2^64 bytes"),
    ("bad_key.onnx", "unknown external data key \"basepath\""),
    ("bad_signed.onnx", "must be decimal integers"),
];

fn assert_refused(what: &str, e: atrank::Error, problem: &str) {
    assert_eq!(e.code(), ErrorCode::InvalidPackage, "{what}: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains("initializer \"table\"") && msg.contains(problem),
        "{what}: {msg:?} should name the table and say {problem:?}"
    );
}

#[test]
fn hostile_references_refused_by_check() {
    for (file, problem) in HOSTILE {
        let e = onnx_check::check(file, graph(file), &expect(ROWS), ALLOWED).unwrap_err();
        assert_refused(file, e, problem);
    }
}

/// `load_graph` checks the references itself: a backend never sees an unchecked graph, even
/// from a caller that skipped `onnx_check::check`.
fn hostile_refused_by_load(backend: Backend) {
    let Some(opts) = options(backend) else {
        return;
    };
    let load = |file: &str, external: &[ExternalFile]| {
        load_graph(
            &opts,
            Path::new(file),
            &graph(file),
            external,
            &["ids".to_owned()],
            &["out".to_owned()],
        )
        .err()
        .unwrap_or_else(|| panic!("{backend}: {file} loaded"))
    };
    for (file, problem) in HOSTILE {
        assert_refused(
            &format!("{backend} {file}"),
            load(file, &[tables()]),
            problem,
        );
    }
    // A truncated tables.bin: the table's range runs past its end.
    let mut short = tables();
    short.data.truncate(TABLE_BYTES - 1);
    assert_refused(
        &format!("{backend} truncated"),
        load("model.onnx", &[short]),
        "range 0 + 6400 bytes lies outside \"tables.bin\" (6399 bytes)",
    );
    // No external file given at all.
    assert_refused(
        &format!("{backend} none"),
        load("model.onnx", &[]),
        "is not one of",
    );
}

#[test]
fn tract_refuses_hostile_references() {
    hostile_refused_by_load(Backend::Tract);
}

#[test]
fn ort_refuses_hostile_references() {
    hostile_refused_by_load(Backend::Ort);
}

/// `VmRSS`, `RssAnon` and `RssFile` of this process, in MiB.
fn rss() -> [u64; 3] {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    [
        kib("VmRSS:") >> 10,
        kib("RssAnon:") >> 10,
        kib("RssFile:") >> 10,
    ]
}

/// Memory of a big external table on each backend (a measurement, not a check: run by hand
/// after making the graph, see docs/package-format-v3.md "Backends and memory"):
/// `ATRANK_EXT_BIG=<dir with model.onnx and tables.bin> cargo test --test external_data -- \
/// --ignored --nocapture big_table_memory`. Prints RSS (total, anonymous, file-backed) before
/// and after loading and after one run, per backend, in one process each (`ATRANK_EXT_BACKEND`).
#[test]
#[ignore = "a measurement; needs ATRANK_EXT_BIG"]
fn big_table_memory() {
    let Some(big) = std::env::var_os("ATRANK_EXT_BIG").map(PathBuf::from) else {
        eprintln!("ATRANK_EXT_BIG is not set");
        return;
    };
    let backend = match std::env::var("ATRANK_EXT_BACKEND").as_deref() {
        Ok("tract") => Backend::Tract,
        _ => Backend::Ort,
    };
    let Some(opts) = options(backend) else {
        return;
    };
    let file = std::fs::File::open(big.join("tables.bin")).unwrap();
    // SAFETY: a file made for this measurement, unchanged while it runs.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let size = map.len() >> 20;
    let external = [ExternalFile {
        name: "tables.bin".into(),
        data: Bytes::from_owner(map),
    }];
    let bytes = Bytes::from(std::fs::read(big.join("model.onnx")).unwrap());
    let before = rss();
    let t = std::time::Instant::now();
    let loaded = load_graph(
        &opts,
        &big.join("model.onnx"),
        &bytes,
        &external,
        &["ids".to_owned()],
        &["out".to_owned()],
    )
    .unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let after_load = rss();
    let ids: Vec<i64> = (0..1000).map(|k| k * 997).collect();
    loaded
        .graph
        .run(&[Feed::I64("ids", &[ids.len()], &ids)], &["out"])
        .unwrap();
    let after_run = rss();
    eprintln!(
        "{backend}: table {size} MiB; RSS [total, anon, file] MiB before {before:?}, after \
         load {after_load:?} ({load_s:.2} s), after a run {after_run:?}"
    );
}

/// The lookup is lifted out of the engine (`LoadOptions::lift_tables`, the default): the
/// rewritten graph has the `Gather` output as an input and no table, and lifting it again
/// finds nothing.
#[test]
fn lift_takes_the_lookup_out_of_the_graph() {
    use atrank::backend::lift::lift;
    let original = graph("model.onnx");
    let (rewritten, lifted) = lift(&original, &[tables()]).unwrap();
    assert_eq!(lifted.len(), 1);
    let l = &lifted[0];
    assert_eq!(
        (l.output.as_str(), l.indices.as_str(), l.table.as_str()),
        ("emb", "ids", "table")
    );
    assert!(rewritten.len() < original.len());
    let (again, none) = lift(&rewritten, &[tables()]).unwrap();
    assert!(none.is_empty());
    assert_eq!(again, rewritten);
    // The inline graph has no external table: nothing to lift, the bytes are unchanged.
    let inline = graph("inline.onnx");
    let (same, none) = lift(&inline, &[]).unwrap();
    assert!(none.is_empty() && same == inline);
}

fn run_with(backend: Backend, lift_tables: bool, ids: &[i64]) -> Option<atrank::Result<Fetched>> {
    let mut opts = options(backend)?;
    opts.lift_tables = lift_tables;
    let loaded = load_graph(
        &opts,
        &dir().join("model.onnx"),
        &graph("model.onnx"),
        &[tables()],
        &["ids".to_owned()],
        &["out".to_owned()],
    )
    .unwrap_or_else(|e| panic!("{backend}: {e}"));
    Some(
        loaded
            .graph
            .run(&[Feed::I64("ids", &[ids.len()], ids)], &["out"])
            .map(|mut v| v.remove(0)),
    )
}

/// Lifted or handed to the engine, the table gives the same bits (a row copy is exact), and
/// an id outside the table is an error from the lifted lookup, as from the engine.
fn lifted_equals_engine(backend: Backend) {
    // More ids than one chunk of the lifted gather (vocab::LOOKAHEAD), repeated, in no order.
    let mut ids = vec![0, 1, 57, ROWS as i64 - 1, 1];
    ids.extend((0..3 * LOOKAHEAD as i64 + 7).map(|k| k * 37 % ROWS as i64));
    let Some(lifted) = run_with(backend, true, &ids) else {
        return;
    };
    let lifted = lifted.unwrap();
    let engine = run_with(backend, false, &ids).unwrap().unwrap();
    let bits = |f: &Fetched| f.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(lifted.shape, engine.shape);
    assert_eq!(bits(&lifted), bits(&engine), "{backend}");
    for bad in [ROWS as i64, -1, i64::MAX] {
        // first in a chunk, and in a later chunk than the first
        let mut late = vec![3; LOOKAHEAD + 2];
        late.push(bad);
        for ids in [vec![0, bad], late] {
            let e = run_with(backend, true, &ids).unwrap().unwrap_err();
            assert!(
                e.to_string().contains(&format!(
                    "index {bad} of input \"ids\" is outside table \"table\" (100 rows)"
                )),
                "{backend}: {e}"
            );
        }
    }
}

#[test]
fn tract_lifted_lookup_equals_the_engines() {
    lifted_equals_engine(Backend::Tract);
}

#[test]
fn ort_lifted_lookup_equals_the_engines() {
    lifted_equals_engine(Backend::Ort);
}

/// Every lookup of an exported package's graphs is lifted: no `Gather` of an external table
/// is left for the engine. (Tables under 1 KiB stay inline in the graph, with the engine:
/// the fixtures' multigroup tables are all that small.)
#[test]
fn every_package_lookup_is_lifted() {
    use atrank::backend::lift::lift;
    for pkg in ["tiny", "tiny-multigroup"] {
        let dir = common::repo().join("tests/fixtures").join(pkg);
        let file = std::fs::File::open(dir.join("tables.bin")).unwrap();
        // SAFETY: a test fixture that nothing modifies while the test runs.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let external = [ExternalFile {
            name: "tables.bin".into(),
            data: Bytes::from_owner(map),
        }];
        for g in ["model.onnx", "encoder.onnx", "scorer.onnx"] {
            let bytes = Bytes::from(std::fs::read(dir.join(g)).unwrap());
            let (rewritten, lifted) = lift(&bytes, &external).unwrap();
            if pkg == "tiny" {
                assert!(!lifted.is_empty(), "{pkg}/{g}");
            }
            let (_, left) = lift(&rewritten, &external).unwrap();
            assert!(left.is_empty(), "{pkg}/{g}: {left:?}");
        }
    }
}
