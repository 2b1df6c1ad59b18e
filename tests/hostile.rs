//! Hostile packages (format 3), through the Rust API: each is refused at load with
//! `InvalidPackage` and a message naming the file and the problem, on both backends, never a
//! panic or a backend error at score time; damage that only a read can see (a catalog value)
//! fails the request that reads it with `InvalidPackage`.
//! The manifest (`files` in spec.json) is rewritten for each altered file, so that the checks
//! behind it (graph structure, spec against graph) are what refuses the package; without the
//! rewrite the manifest alone refuses it, which the last test checks.

mod common;

use std::path::Path;

use atrank::vocab::{atv_bytes, atv_index_bytes};
use atrank::{Backend, Behavior, ErrorCode, LoadOptions, Model, Request};
use common::{read_spec, replace_file, write_spec, TempPackage};
use serde_json::json;

/// A fresh copy of the fixture package `name` (files copied, not linked).
fn copy_package(name: &str, tag: &str) -> TempPackage {
    common::copy_package(
        &common::repo().join("tests/fixtures").join(name),
        &format!("hostile-{tag}"),
    )
}

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Tract];
    if let Some(lib) = common::ort_library() {
        atrank::backend::ort::init(Some(&lib)).unwrap();
        b.push(Backend::Ort);
    }
    b
}

fn expect_refused(dir: &Path, needle: &str) {
    for backend in backends() {
        let e = Model::load(dir, backend).expect_err("the package must be refused");
        assert_eq!(e.code(), ErrorCode::InvalidPackage, "{backend}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{backend}: {e:#} lacks {needle:?}"
        );
    }
}

#[test]
fn a_vocabulary_larger_than_the_graphs_table_is_refused_at_load() {
    // The graph's item table has 81 rows (80 ids + index 0). A vocabulary of 80 + 1,000 keys
    // (the spec's size updated to match) produces indices past it.
    let dir = copy_package("tiny", "vocab");
    let mut keys = atv_keys(&std::fs::read(dir.join("vocab/item_id.atv")).unwrap());
    assert_eq!(keys.len(), 80);
    keys.extend((0..1000).map(|k| format!("extra-{k:04}").into_bytes()));
    keys.sort();
    replace_file(&dir, "vocab/item_id.atv", &atv_bytes(&keys).unwrap());
    // and its hashed index (the old one indexes 80 keys: refused first, see below)
    let old_index = std::fs::read(dir.join("vocab/item_id.atvx")).unwrap();
    replace_file(
        &dir,
        "vocab/item_id.atvx",
        &atv_index_bytes(&keys, 0).unwrap(),
    );
    let mut spec = read_spec(&dir);
    spec["tables"]["item_id"]["size"] = json!(1080);
    write_spec(&dir, &spec);
    expect_refused(&dir, "indexed by input \"item_id\" has 81 rows");
    replace_file(&dir, "vocab/item_id.atvx", &old_index);
    expect_refused(
        &dir,
        "vocab/item_id.atvx: indexes 80 keys, but vocab/item_id.atv holds 1080",
    );
    // Hashed buckets the graph has no rows for, with the vocabulary unchanged.
    let dir = copy_package("tiny", "buckets");
    let mut spec = read_spec(&dir);
    spec["tables"]["item_id"]["hash_buckets"] = json!(5);
    write_spec(&dir, &spec);
    expect_refused(&dir, "indexed by input \"item_id\" has 81 rows");
}

#[test]
fn a_truncated_or_garbage_graph_is_an_invalid_package_not_a_backend_error() {
    let dir = copy_package("tiny", "truncated");
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    for cut in [onnx.len() / 2, onnx.len() - 1, 1] {
        replace_file(&dir, "model.onnx", &onnx[..cut]);
        expect_refused(&dir, "model.onnx");
    }
    replace_file(&dir, "model.onnx", b"this is not an ONNX model");
    expect_refused(&dir, "model.onnx");
}

#[test]
fn hostile_graphs_are_refused_before_a_backend_optimises_them() {
    let dir = copy_package("tiny", "graphs");
    let hostile = common::repo().join("tests/fixtures/hostile");
    for (file, needle) in [
        ("chain.onnx", "nodes, more than"),
        ("constant_of_shape.onnx", "ConstantOfShape"),
    ] {
        replace_file(
            &dir,
            "model.onnx",
            &std::fs::read(hostile.join(file)).unwrap(),
        );
        expect_refused(&dir, needle);
    }
}

#[test]
fn a_graph_input_of_the_wrong_dtype_is_refused() {
    // The multigroup scorer takes float inputs; as the main graph it has the wrong inputs.
    let dir = copy_package("tiny-multigroup", "dtype");
    let scorer = std::fs::read(dir.join("scorer.onnx")).unwrap();
    replace_file(&dir, "model.onnx", &scorer);
    expect_refused(&dir, "model.onnx");
}

#[test]
fn the_manifest_refuses_a_file_that_does_not_belong() {
    let dir = copy_package("tiny", "manifest");
    // Same size, one byte of the last key changed (still a valid atv file): only the hash
    // can tell.
    let mut vocab = std::fs::read(dir.join("vocab/category.atv")).unwrap();
    *vocab.last_mut().unwrap() ^= 1;
    std::fs::write(dir.join("vocab/category.atv"), &vocab).unwrap();
    expect_refused(&dir, "vocab/category.atv: SHA-256");
    // Likewise a catalog column and tables.bin.
    for rel in ["catalog/item.category.u32", "tables.bin"] {
        let dir = copy_package("tiny", "manifest-data");
        let mut bytes = std::fs::read(dir.join(rel)).unwrap();
        bytes[0] ^= 1;
        std::fs::write(dir.join(rel), &bytes).unwrap();
        expect_refused(&dir, &format!("{rel}: SHA-256"));
    }
    // A spec without a manifest.
    let mut spec = read_spec(&dir);
    spec.as_object_mut().unwrap().remove("files");
    write_spec(&dir, &spec);
    expect_refused(&dir, "\"files\"");
}

#[test]
fn the_encoding_cache_stays_within_its_byte_budget() {
    let pkg = common::repo().join("tests/fixtures/tiny-multigroup");
    let budget = 64 << 10;
    let model = Model::load_with(
        &pkg,
        &LoadOptions {
            cache_capacity: 1 << 20,
            cache_bytes: budget,
            ..LoadOptions::new(Backend::Tract)
        },
    )
    .unwrap();
    let ids: Vec<String> = (0..50).map(|k| format!("i{k}")).collect();
    let history: Vec<Behavior<'_>> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| Behavior::item(id, None, None, 1_300_000_000 + k as i64))
        .collect();
    let mut most = 0;
    for u in 0..500 {
        let key = format!("user-{u}");
        let r = Request {
            behaviors: &history,
            candidates: &["i1", "i2"],
            request_time: 1_300_100_000,
        };
        model.score_cached(&key, &r).unwrap();
        let s = model.cache_stats();
        assert!(
            s.bytes <= budget,
            "cache holds {} bytes, budget {budget}",
            s.bytes
        );
        most = most.max(s.entries);
    }
    let s = model.cache_stats();
    assert!(
        s.entries > 0 && s.entries < 500,
        "{s:?}: the budget must evict"
    );
    assert_eq!(s.misses, 500);
    assert!(most > 1, "at least two encodings fit in {budget} bytes");
}

#[test]
fn limits_on_options_are_checked_before_loading() {
    let pkg = common::repo().join("tests/fixtures/tiny-multigroup");
    let e = Model::load_with(
        &pkg,
        &LoadOptions {
            cache_capacity: usize::MAX,
            ..LoadOptions::new(Backend::Tract)
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let e = Model::load("", Backend::Tract).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}

/// The keys of an atv file, read here from the layout in docs/package-format-v3.md ("The atv
/// file"), independently of the runtime's reader.
fn atv_keys(bytes: &[u8]) -> Vec<Vec<u8>> {
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    assert_eq!(&bytes[..8], b"ATRVOC01");
    let n = u64_at(8);
    let keys_at = 32 + 8 * (n + 1);
    (0..n)
        .map(|k| bytes[keys_at + u64_at(32 + 8 * k)..keys_at + u64_at(40 + 8 * k)].to_vec())
        .collect()
}

/// An atv file of `keys` in the order given (the writers refuse keys out of order; a damaged
/// or hostile file may hold them so).
fn atv_any_order(keys: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = keys.iter().map(Vec::len).sum();
    let mut out = b"ATRVOC01".to_vec();
    for v in [keys.len(), total, 0] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    let mut at = 0u64;
    out.extend_from_slice(&at.to_le_bytes());
    for k in keys {
        at += k.len() as u64;
        out.extend_from_slice(&at.to_le_bytes());
    }
    for k in keys {
        out.extend_from_slice(k);
    }
    out
}

/// The first golden request of the package in `dir`, scored on `backend`.
fn score_first_golden(dir: &Path, model: &Model) -> atrank::Result<Vec<f32>> {
    let req = &common::read_golden(dir).requests[0];
    common::with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
        model.score(r)
    })
}

#[test]
fn a_truncated_tables_bin_is_refused_by_the_manifest_and_by_the_range_check() {
    let dir = copy_package("tiny", "tables-cut");
    let tables = std::fs::read(dir.join("tables.bin")).unwrap();
    assert_eq!(
        tables.len(),
        1296,
        "the fixture's tables.bin: one 81 x 4 float32 table"
    );
    // The manifest still says 1,296 bytes: refused before anything is mapped.
    std::fs::write(dir.join("tables.bin"), &tables[..tables.len() - 1]).unwrap();
    expect_refused(
        &dir,
        "tables.bin has 1295 bytes, but the spec's manifest says 1296",
    );
    // The manifest rewritten to match the truncated file: the graph's external reference
    // (offset 0, 1,296 bytes) now runs past the end of the file.
    for cut in [tables.len() - 1, 1] {
        replace_file(&dir, "tables.bin", &tables[..cut]);
        expect_refused(
            &dir,
            &format!("range 0 + 1296 bytes lies outside \"tables.bin\" ({cut} bytes)"),
        );
        expect_refused(&dir, "model.onnx");
    }
    // Empty: nothing to map, and no range fits.
    replace_file(&dir, "tables.bin", b"");
    expect_refused(&dir, "lies outside \"tables.bin\" (0 bytes)");
}

#[test]
fn a_vocabulary_that_does_not_match_its_spec_is_refused() {
    // n = 7 keys where the spec says 6 (the manifest's size fits either).
    let dir = copy_package("tiny", "vocab-n");
    let mut keys = atv_keys(&std::fs::read(dir.join("vocab/category.atv")).unwrap());
    assert_eq!(keys.len(), 6);
    keys.push(b"zz-extra".to_vec());
    replace_file(&dir, "vocab/category.atv", &atv_bytes(&keys).unwrap());
    expect_refused(
        &dir,
        "vocab/category.atv: holds 7 keys, but the spec says 6",
    );
    // Bad magic, the rest intact.
    let dir = copy_package("tiny", "vocab-magic");
    let mut bytes = std::fs::read(dir.join("vocab/item_id.atv")).unwrap();
    bytes[..8].copy_from_slice(b"ATRVOC02");
    replace_file(&dir, "vocab/item_id.atv", &bytes);
    expect_refused(&dir, "vocab/item_id.atv: not an atv file");
    // A header whose n and key_bytes disagree with the file's size (the catalog's keys).
    let dir = copy_package("tiny", "vocab-header");
    let mut bytes = std::fs::read(dir.join("catalog/item.atv")).unwrap();
    bytes[16] ^= 0x40;
    replace_file(&dir, "catalog/item.atv", &bytes);
    expect_refused(&dir, "catalog/item.atv:");
    expect_refused(&dir, "truncated or damaged");
}

#[test]
fn unsorted_vocabulary_keys_give_misses_not_a_crash() {
    // The category keys reversed: opening cannot see it (constant time); a look-up's binary
    // search then misses or finds a wrong rank, never reads outside the file.
    let dir = copy_package("tiny", "vocab-unsorted");
    let mut keys = atv_keys(&std::fs::read(dir.join("vocab/category.atv")).unwrap());
    keys.reverse();
    replace_file(&dir, "vocab/category.atv", &atv_any_order(&keys));
    let spec = atrank::spec::Spec::read(&dir).unwrap();
    let pre = atrank::preprocess::Preprocessor::load(&spec, &dir).unwrap();
    let t = spec
        .tables
        .iter()
        .position(|t| t.name == "category")
        .unwrap();
    for key in &keys {
        let value = std::str::from_utf8(key).unwrap();
        let history = [Behavior::item("i1", Some(value), None, 0)];
        let prepared = pre
            .prepare(&[Request {
                behaviors: &history,
                candidates: &["i1"],
                request_time: 0,
            }])
            .unwrap();
        let index = prepared.get("item_category").unwrap().data[0];
        assert!(
            (0..pre.table_rows(t) as i64).contains(&index),
            "{value}: index {index}"
        );
    }
    for backend in backends() {
        let model = Model::load(&*dir, backend).unwrap();
        let scores = score_first_golden(&dir, &model).unwrap();
        assert!(
            scores.iter().all(|s| s.is_finite()),
            "{backend}: {scores:?}"
        );
    }
}

#[test]
fn external_data_locations_that_leave_the_package_are_refused() {
    // The graphs name "tables.bin" in each external reference; rewrite it in place (same
    // length, so the protobuf stays well formed) and record the graph in the manifest.
    let original = std::fs::read(copy_package("tiny", "loc-src").join("model.onnx")).unwrap();
    let name = b"tables.bin";
    let rewrite = |to: &[u8; 10]| -> Vec<u8> {
        let mut out = original.clone();
        let mut found = 0;
        let mut at = 0;
        while let Some(p) = out[at..].windows(10).position(|w| w == name) {
            out[at + p..at + p + 10].copy_from_slice(to);
            at += p + 10;
            found += 1;
        }
        assert!(found >= 1, "model.onnx names tables.bin");
        out
    };
    for (to, problem) in [
        (b"../tab.bin", "is a path outside the package"),
        (b"/etc/hosts", "is an absolute path"),
        (
            b"tables.xxx",
            "is not one of the package's external data files",
        ),
    ] {
        let dir = copy_package("tiny", "loc");
        replace_file(&dir, "model.onnx", &rewrite(to));
        let location = std::str::from_utf8(to).unwrap();
        expect_refused(
            &dir,
            &format!("external data location {location:?} {problem}"),
        );
        expect_refused(&dir, "model.onnx");
    }
    // The spec's own list may not leave the package either.
    for location in ["../tables.bin", "/tmp/tables.bin"] {
        let dir = copy_package("tiny", "loc-spec");
        let mut spec = read_spec(&dir);
        spec["graph"]["external_data"] = json!([location]);
        let entry = spec["files"]["tables.bin"].clone();
        spec["files"][location] = entry;
        write_spec(&dir, &spec);
        expect_refused(
            &dir,
            &format!("graph.external_data {location:?} must be a relative path inside the package"),
        );
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_package_file_that_leaves_the_package_is_refused() {
    use std::os::unix::fs::symlink;
    // tables.bin -> /etc/passwd; and tables.bin -> an identical copy outside the package (the
    // size and hash would match: only the "inside the package" rule refuses it). Likewise a
    // vocabulary and a catalog column.
    for rel in [
        "tables.bin",
        "vocab/item_id.atv",
        "catalog/item.category.u32",
    ] {
        let dir = copy_package("tiny", "symlink-passwd");
        std::fs::remove_file(dir.join(rel)).unwrap();
        symlink("/etc/passwd", dir.join(rel)).unwrap();
        expect_refused(
            &dir,
            &format!("{rel} resolves to /etc/passwd, outside the package"),
        );

        let dir = copy_package("tiny", "symlink-copy");
        let outside = std::env::temp_dir().join(format!(
            "atrank-hostile-outside-{}-{}",
            std::process::id(),
            rel.replace('/', "_")
        ));
        std::fs::copy(dir.join(rel), &outside).unwrap();
        std::fs::remove_file(dir.join(rel)).unwrap();
        symlink(&outside, dir.join(rel)).unwrap();
        expect_refused(&dir, &format!("{rel} resolves to {}", outside.display()));
        expect_refused(&dir, "outside the package directory");
        std::fs::remove_file(&outside).unwrap();
    }
}

#[test]
fn a_catalog_value_past_its_table_fails_the_request_with_invalid_package() {
    // The category table has 6 keys: rows 0..=6. Every catalog row now says 7.
    let dir = copy_package("tiny", "catalog-range");
    let rows = std::fs::read(dir.join("catalog/item.category.u32"))
        .unwrap()
        .len()
        / 4;
    let column: Vec<u8> = (0..rows).flat_map(|_| 7u32.to_le_bytes()).collect();
    replace_file(&dir, "catalog/item.category.u32", &column);
    for backend in backends() {
        // Values are checked when read, not at load (constant-time open).
        let model = Model::load(&*dir, backend).unwrap();
        let e = model
            .score(&Request {
                behaviors: &[],
                candidates: &["i1"],
                request_time: 0,
            })
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidPackage, "{backend}: {e}");
        assert!(
            e.to_string().contains("catalog/item.category.u32: row ")
                && e.to_string()
                    .contains("holds index 7, past the table's last row 6"),
            "{backend}: {e}"
        );
        // Through a behavior's catalog feature too; the caller's own value reads nothing.
        let history = [Behavior::item("i1", None, None, 0)];
        let r = |history| {
            model.score(&Request {
                behaviors: history,
                candidates: &["unknown-id"],
                request_time: 0,
            })
        };
        let e = r(&history).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidPackage, "{backend}: {e}");
        let keys = atv_keys(&std::fs::read(dir.join("vocab/category.atv")).unwrap());
        let own = std::str::from_utf8(&keys[0]).unwrap();
        assert!(r(&[Behavior::item("i1", Some(own), None, 0)]).is_ok());
    }
}
