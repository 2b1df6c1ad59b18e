//! Version 3: the spec's new parts, and preprocessing over mapped atv vocabularies and
//! catalogs with hashed buckets. Packages are written to a temporary directory with
//! [`crate::vocab::atv_bytes`] (byte-identical to the exporter's writer, see
//! `src/vocab/tests.rs`); expected indices are worked out by hand from the doc's rule.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;
use crate::package::sha256_hex;
use crate::vocab::{atv_bytes, atv_index_bytes, xxh3_64};
use crate::ErrorCode;

const SEED: u64 = 7;

/// A package directory that removes itself.
struct Pkg(PathBuf);

impl Drop for Pkg {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn column(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The spec of a one-group v3 package: tables `item_id` (i1, i2, i3; 4 buckets) and `category`
/// (c1, c2; no buckets); the catalog's keys are `keys` (the id vocabulary's file when `None`).
fn spec_json(keys: Option<&str>, rows: u64) -> Value {
    json!({
        "format": "atrank-model-package", "spec_version": 3, "name": "v3-test",
        "graph": {"file": "model.onnx", "opset": 20,
                  "inputs": ["item_id", "item_category", "item_action", "item_time", "item_len",
                             "cand_id", "cand_category"],
                  "output": "logits", "output_kind": "logit", "external_data": ["tables.bin"]},
        "hash": {"function": "xxh3_64", "seed": SEED},
        "tables": {"item_id": {"vocab": "vocab/item_id.atv", "size": 3, "hash_buckets": 4},
                   "category": {"vocab": "vocab/category.atv", "size": 2, "hash_buckets": 0}},
        "groups": [{"name": "item", "max_history": 4,
                    "features": [{"name": "id", "table": "item_id", "input": "item_id"},
                                 {"name": "category", "table": "category",
                                  "input": "item_category"}],
                    "inputs": {"action": "item_action", "time_bucket": "item_time",
                               "length": "item_len"},
                    "catalog": {"keys": keys.unwrap_or("vocab/item_id.atv"), "rows": rows,
                                "columns": {"category": "catalog/item.category.u32"}}}],
        "target_group": "item",
        "candidate_inputs": {"id": "cand_id", "category": "cand_category"},
        "actions": ["like", "other"],
        "time_buckets": {"unit_seconds": 86400, "offset": 1, "boundaries": [2, 4]},
        "limits": {"max_candidates": 10, "max_behaviors": 10},
        "model": {"anything": "ignored"},
    })
}

/// Writes `files` and a spec (with its manifest) into a fresh directory.
fn write_package(name: &str, mut spec: Value, files: &[(&str, Vec<u8>)]) -> Pkg {
    let dir = std::env::temp_dir().join(format!("atrank-v3-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut manifest = serde_json::Map::new();
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        manifest.insert(
            rel.to_string(),
            json!({"sha256": sha256_hex(bytes), "bytes": bytes.len()}),
        );
    }
    spec["files"] = Value::Object(manifest);
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    Pkg(dir)
}

fn base_files(category: &[u32]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("model.onnx", b"not read here".to_vec()),
        ("tables.bin", vec![0; 16]),
        ("vocab/item_id.atv", atv_bytes(&["i1", "i2", "i3"]).unwrap()),
        ("vocab/category.atv", atv_bytes(&["c1", "c2"]).unwrap()),
        ("catalog/item.category.u32", column(category)),
    ]
}

fn load(pkg: &Pkg) -> Result<Preprocessor> {
    let dir = PackageDir::open(&pkg.0)?;
    let spec = Spec::read_from(&dir)?;
    Preprocessor::load_from(&spec, &dir)
}

fn col<'p>(p: &'p Prepared, name: &str) -> &'p [i64] {
    &p.get(name).unwrap().data
}

fn bucket(s: &str) -> i64 {
    // size 3 + 1 + xxh3_64 mod 4 buckets.
    4 + (xxh3_64(s.as_bytes(), SEED) % 4) as i64
}

/// `p.prepare` of one request, checked against the same without the resolved features
/// (the full look-ups): the same inputs, or the same error.
fn score_inputs(
    p: &Preprocessor,
    behaviors: &[Behavior<'_>],
    candidates: &[&str],
) -> Result<Prepared> {
    let req = [Request {
        behaviors,
        candidates,
        request_time: 100 * 86_400,
    }];
    same_both_ways(p, &req)
}

/// `p.prepare(requests)`, asserting that the full look-ups give the same (see `score_inputs`).
fn same_both_ways(p: &Preprocessor, requests: &[Request<'_>]) -> Result<Prepared> {
    let got = p.prepare(requests);
    match (&got, &super::tests::unresolved(p).prepare(requests)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("resolved {a:?}, full look-ups {b:?}"),
    }
    got
}

#[test]
fn spec_reads_the_v3_parts() {
    let pkg = write_package("spec", spec_json(None, 3), &base_files(&[1, 0, 2]));
    let spec = Spec::read(&pkg.0).unwrap();
    assert_eq!(spec.version, 3);
    assert_eq!(spec.hash_seed, SEED);
    assert_eq!(spec.external_data, ["tables.bin"]);
    let id_table = &spec.tables[spec.groups[0].features[0].table];
    assert_eq!((id_table.size, id_table.hash_buckets), (3, 4));
    assert_eq!(
        spec.groups[0].catalog,
        Some(CatalogSpec {
            keys: "vocab/item_id.atv".into(),
            rows: 3,
            columns: vec![(1, "catalog/item.category.u32".into())],
        })
    );
    let mut named = spec.referenced_files();
    named.sort_unstable();
    assert_eq!(
        named,
        [
            "catalog/item.category.u32",
            "model.onnx",
            "tables.bin",
            "vocab/category.atv",
            "vocab/item_id.atv"
        ]
    );
}

/// `edit` applied to a valid v3 spec must make it invalid with a message containing `want`.
fn refused(edit: impl Fn(&mut Value), want: &str) {
    let pkg = write_package("refused", spec_json(None, 3), &base_files(&[1, 0, 2]));
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(pkg.0.join("spec.json")).unwrap()).unwrap();
    edit(&mut spec);
    match Spec::from_json(&spec.to_string()) {
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidPackage);
            assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
        }
        Ok(_) => panic!("accepted; wanted {want:?}"),
    }
}

#[test]
fn spec_refuses_bad_v3_parts() {
    refused(
        |s| s["hash"]["function"] = json!("murmur3"),
        "hash.function \"murmur3\"",
    );
    refused(
        |s| {
            s.as_object_mut().unwrap().remove("hash");
        },
        "missing field `hash`",
    );
    refused(
        |s| s["tables"]["item_id"]["hash_buckets"] = json!(u64::MAX),
        "more than 4294967295 rows",
    );
    refused(
        |s| s["tables"]["item_id"]["size"] = json!(u32::MAX),
        "more than 4294967295 rows",
    );
    refused(
        |s| s["groups"][0]["catalog"]["rows"] = json!(1u64 << 33),
        "catalog.rows",
    );
    refused(
        |s| s["groups"][0]["catalog"]["columns"] = json!({"id": "catalog/item.category.u32"}),
        "the catalog's key, not a column",
    );
    refused(
        |s| s["groups"][0]["catalog"]["columns"] = json!({"shop": "catalog/item.category.u32"}),
        "names \"shop\", not a feature",
    );
    refused(
        |s| s["groups"][0]["catalog"]["columns"]["category"] = json!("../outside.u32"),
        "relative path inside the package",
    );
    refused(
        |s| s["graph"]["external_data"] = json!(["tables.bin", "tables.bin"]),
        "twice",
    );
    refused(
        |s| s["graph"]["external_data"] = json!(["/abs/tables.bin"]),
        "relative path",
    );
    // The manifest must list every named file, and only those.
    refused(
        |s| {
            s["files"].as_object_mut().unwrap().remove("tables.bin");
        },
        "no entry for \"tables.bin\"",
    );
    refused(
        |s| {
            s["files"]
                .as_object_mut()
                .unwrap()
                .remove("catalog/item.category.u32");
        },
        "no entry for \"catalog/item.category.u32\"",
    );
    // Sizes in the manifest that cannot hold what the spec says.
    refused(
        |s| s["tables"]["category"]["size"] = json!(1000),
        "too few for 1000 keys",
    );
    refused(
        |s| s["files"]["catalog/item.category.u32"]["bytes"] = json!(13),
        "expected 4 x 3 rows",
    );
    refused(
        |s| {
            s["groups"][0]["catalog"]["rows"] = json!(2);
            s["files"]["catalog/item.category.u32"]["bytes"] = json!(8);
        },
        "vocabulary of 3 keys, but catalog.rows is 2",
    );
    refused(
        |s| s["tables"][""] = s["tables"]["category"].clone(),
        "table name \"\" must be 1..=256 bytes",
    );
    // Every other version, the former ones included, is refused by name.
    for v in [json!(1), json!(2), json!(4), json!("3"), json!(3.5)] {
        refused(
            |s| s["spec_version"] = v.clone(),
            &format!("spec_version {v} is not supported: this runtime reads spec_version 3 only"),
        );
    }
    refused(
        |s| s["actions"] = json!(["like", "other", "like"]),
        "actions lists \"like\" twice",
    );
}

#[test]
fn ids_catalog_values_and_hashed_buckets() {
    // Catalog rows follow the id vocabulary: i1 -> c1, i2 -> none, i3 -> c2.
    let pkg = write_package("ids", spec_json(None, 3), &base_files(&[1, 0, 2]));
    let p = load(&pkg).unwrap();
    assert_eq!(p.table_len(0), 2); // tables are in name order: category, item_id
    assert_eq!(p.table_rows(0), 3);
    assert_eq!(p.table_len(1), 3);
    assert_eq!(p.table_rows(1), 3 + 1 + 4);
    let history = [
        Behavior::item("i2", Some("c2"), Some("like"), 99 * 86_400),
        Behavior::item("new", None, Some("other"), 98 * 86_400),
        Behavior::item("i3", Some("c9"), None, 97 * 86_400),
    ];
    let out = score_inputs(&p, &history, &["i1", "i2", "i3", "zz", ""]).unwrap();
    assert_eq!(col(&out, "cand_id"), [1, 2, 3, bucket("zz"), bucket("")]);
    // A hashed id has no catalog row: its category is missing (0), never hashed.
    assert_eq!(col(&out, "cand_category"), [1, 0, 2, 0, 0]);
    // History, oldest first: i3 (caller's unknown category c9 -> 0, the catalog's c2 is
    // overridden), new (hashed id, no catalog row), i2 (caller's c2).
    assert_eq!(col(&out, "item_id"), [3, bucket("new"), 2]);
    assert_eq!(col(&out, "item_category"), [0, 0, 2]);
    assert_eq!(col(&out, "item_action"), [0, 2, 1]);
    for s in ["zz", "", "new"] {
        assert!((4..8).contains(&bucket(s)));
    }
}

/// Candidates are looked up LOOKAHEAD at a time (their catalog rows too): lists longer than a
/// chunk, not a multiple of it, in two requests of a batch, must give the indices `want` says
/// one by one: (id index, category index).
fn check_chunked_candidates(p: &Preprocessor, want: impl Fn(&str) -> (i64, i64)) {
    let pool = ["i1", "i2", "i3", "zz", "", "i0", "i4"];
    let a: Vec<&str> = (0..2 * LOOKAHEAD + 5).map(|k| pool[k * 3 % 7]).collect();
    let b: Vec<&str> = (0..LOOKAHEAD + 1).map(|k| pool[k % 7]).collect();
    let out = same_both_ways(
        p,
        &[
            Request {
                behaviors: &[],
                candidates: &a,
                request_time: 0,
            },
            Request {
                behaviors: &[],
                candidates: &b,
                request_time: 0,
            },
        ],
    )
    .unwrap();
    let n = a.len();
    let padded = |c: &[&str], f: fn((i64, i64)) -> i64| -> Vec<i64> {
        let mut v: Vec<i64> = c.iter().map(|c| f(want(c))).collect();
        v.resize(n, 0);
        v
    };
    let ids = [padded(&a, |w| w.0), padded(&b, |w| w.0)].concat();
    let cats = [padded(&a, |w| w.1), padded(&b, |w| w.1)].concat();
    assert_eq!(col(&out, "cand_id"), ids);
    assert_eq!(col(&out, "cand_category"), cats);
}

/// The id rule of `base_files`' vocabulary i1, i2, i3 with the categories of `by_id`.
fn ids_then(c: &str, by_id: [i64; 3]) -> (i64, i64) {
    match c {
        "i1" => (1, by_id[0]),
        "i2" => (2, by_id[1]),
        "i3" => (3, by_id[2]),
        other => (bucket(other), 0),
    }
}

fn keys_are_ids(p: &Preprocessor) -> bool {
    p.groups[0].as_ref().unwrap().keys_are_ids
}

/// `base_files(category)` with room for 100 candidates; the catalog's keys are the id
/// vocabulary's file (`own_keys` None) or a file `catalog/item.atv` holding `own_keys`.
fn chunk_package(name: &str, category: &[u32], own_keys: Option<&[&str]>) -> Preprocessor {
    let mut spec = spec_json(own_keys.map(|_| "catalog/item.atv"), 3);
    spec["limits"]["max_candidates"] = json!(100);
    let mut files = base_files(category);
    if let Some(keys) = own_keys {
        files.push(("catalog/item.atv", atv_bytes(keys).unwrap()));
    }
    let pkg = write_package(name, spec, &files);
    load(&pkg).unwrap()
}

#[test]
fn candidates_beyond_one_lookahead_chunk() {
    let p = chunk_package("chunks", &[1, 0, 2], None);
    assert!(keys_are_ids(&p));
    check_chunked_candidates(&p, |c| ids_then(c, [1, 0, 2]));
}

#[test]
fn a_catalog_whose_keys_file_has_the_vocabularys_bytes_is_read_by_id() {
    // Another file, the same bytes (so the same manifest entry): the catalog row of id index
    // i is i - 1, with no second look-up; the indices are the rule's.
    let p = chunk_package("same-bytes", &[1, 0, 2], Some(&["i1", "i2", "i3"]));
    assert!(keys_are_ids(&p));
    check_chunked_candidates(&p, |c| ids_then(c, [1, 0, 2]));
}

#[test]
fn a_catalog_with_its_own_keys_beyond_one_lookahead_chunk() {
    // As many keys as the vocabulary, other keys: i1 -> c1, i3 -> c2, zz -> c2 (a hashed id
    // the catalog knows), i2 has no row. Looked up LOOKAHEAD at a time (Atv::get_many).
    let p = chunk_package("own-keys-chunks", &[1, 2, 2], Some(&["i1", "i3", "zz"]));
    assert!(!keys_are_ids(&p));
    check_chunked_candidates(&p, |c| match c {
        "zz" => (bucket("zz"), 2),
        other => ids_then(other, [1, 0, 2]),
    });
}

#[test]
fn a_catalog_with_its_own_keys() {
    // Keys i2 and zz (an id the vocabulary does not have): zz -> c1, i2 -> c2.
    let mut files = base_files(&[2, 1]);
    files.push(("catalog/item.atv", atv_bytes(&["i2", "zz"]).unwrap()));
    let pkg = write_package("keys", spec_json(Some("catalog/item.atv"), 2), &files);
    let p = load(&pkg).unwrap();
    let out = score_inputs(&p, &[], &["zz", "i2", "i1", "yy"]).unwrap();
    assert_eq!(col(&out, "cand_id"), [bucket("zz"), 2, 1, bucket("yy")]);
    assert_eq!(col(&out, "cand_category"), [1, 2, 0, 0]);
}

#[test]
fn a_damaged_catalog_value_fails_the_request_that_reads_it() {
    // Row 2 (i3) holds 3: the category table has rows 0..=2.
    let pkg = write_package("damaged", spec_json(None, 3), &base_files(&[1, 0, 3]));
    let p = load(&pkg).unwrap();
    let ok = score_inputs(&p, &[], &["i1", "i2"]).unwrap();
    assert_eq!(col(&ok, "cand_category"), [1, 0]);
    let e = score_inputs(&p, &[], &["i1", "i3"]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidPackage);
    assert!(
        e.to_string()
            .contains("catalog/item.category.u32: row 2 holds index 3"),
        "{e}"
    );
    // Also through a behavior, and with the caller's own category nothing is read.
    let history = [Behavior::item("i3", None, None, 0)];
    assert!(score_inputs(&p, &history, &["i1"]).is_err());
    let history = [Behavior::item("i3", Some("c1"), None, 0)];
    assert!(score_inputs(&p, &history, &["i1"]).is_ok());
}

#[test]
fn load_refuses_damaged_files() {
    let check = |name: &str, spec: Value, files: Vec<(&str, Vec<u8>)>, want: &str| {
        let pkg = write_package(name, spec, &files);
        let e = load(&pkg).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidPackage, "{e}");
        assert!(
            e.to_string().contains(want),
            "{name}: {e} (wanted {want:?})"
        );
    };
    // The file holds 3 keys; the spec says 2 (the manifest's size still fits 2).
    let mut spec = spec_json(None, 3);
    spec["tables"]["item_id"]["size"] = json!(2);
    spec["groups"][0]["catalog"]["keys"] = json!("catalog/item.atv");
    spec["groups"][0]["catalog"]["rows"] = json!(3);
    let mut files = base_files(&[1, 0, 2]);
    files.push(("catalog/item.atv", atv_bytes(&["a", "b", "c"]).unwrap()));
    check(
        "n",
        spec,
        files,
        "vocab/item_id.atv: holds 3 keys, but the spec says 2",
    );
    // Truncated (and the manifest made to match it).
    let mut files = base_files(&[1, 0, 2]);
    files[2].1.pop();
    check(
        "truncated",
        spec_json(None, 3),
        files,
        "vocab/item_id.atv: 69 bytes",
    );
    // Not an atv file.
    let mut files = base_files(&[1, 0, 2]);
    files[3].1[0] = b'X';
    check(
        "magic",
        spec_json(None, 3),
        files,
        "vocab/category.atv: not an atv file",
    );
    // A file changed after the manifest was written: the hash (small files) catches it.
    let pkg = write_package("changed", spec_json(None, 3), &base_files(&[1, 0, 2]));
    std::fs::write(pkg.0.join("catalog/item.category.u32"), column(&[2, 0, 2])).unwrap();
    let e = load(&pkg).unwrap_err();
    assert!(e.to_string().contains("SHA-256"), "{e}");
}

/// `base_files` with a hashed index for each atv file, and the spec naming them.
fn indexed_package(name: &str, index: Vec<u8>) -> Pkg {
    let mut spec = spec_json(None, 3);
    spec["atv_index"] = json!({"vocab/item_id.atv": "vocab/item_id.atvx",
                               "vocab/category.atv": "vocab/category.atvx"});
    let mut files = base_files(&[1, 0, 2]);
    files.push(("vocab/item_id.atvx", index));
    files.push((
        "vocab/category.atvx",
        atv_index_bytes(&["c1", "c2"], 5).unwrap(),
    ));
    write_package(name, spec, &files)
}

#[test]
fn atv_indexes_give_the_same_indices() {
    let pkg = indexed_package("index", atv_index_bytes(&["i1", "i2", "i3"], 0).unwrap());
    let spec = Spec::read(&pkg.0).unwrap();
    assert_eq!(spec.atv_index.len(), 2);
    assert!(spec.referenced_files().contains(&"vocab/item_id.atvx"));
    let p = load(&pkg).unwrap();
    assert!(p.tables.iter().all(|t| t.atv.has_index()));
    // the catalog's keys are the id vocabulary: the same opened file, with its index
    assert!(p.groups[0].as_ref().unwrap().catalog.keys.has_index());
    let history = [
        Behavior::item("i2", Some("c2"), Some("like"), 99 * 86_400),
        Behavior::item("new", None, Some("other"), 98 * 86_400),
    ];
    let out = score_inputs(&p, &history, &["i1", "i2", "i3", "zz", ""]).unwrap();
    assert_eq!(col(&out, "cand_id"), [1, 2, 3, bucket("zz"), bucket("")]);
    assert_eq!(col(&out, "cand_category"), [1, 0, 2, 0, 0]);
    assert_eq!(col(&out, "item_id"), [bucket("new"), 2]);
    assert_eq!(col(&out, "item_category"), [0, 2]);
}

#[test]
fn atv_index_entries_are_checked() {
    let index = |s: &mut Value, v: Value| s["atv_index"] = v;
    refused(
        |s| index(s, json!({"vocab/nope.atv": "vocab/nope.atvx"})),
        "not a table's vocab or a catalog's keys",
    );
    refused(
        |s| index(s, json!({"vocab/item_id.atv": "/tmp/x.atvx"})),
        "relative path inside the package",
    );
    refused(
        |s| {
            index(
                s,
                json!({"vocab/item_id.atv": "i.atvx", "vocab/category.atv": "i.atvx"}),
            )
        },
        "names \"i.atvx\" for both",
    );
    refused(
        |s| index(s, json!({"vocab/item_id.atv": "vocab/category.atv"})),
        "is an atv file of the spec",
    );
    // an index the manifest does not list
    refused(
        |s| index(s, json!({"vocab/item_id.atv": "vocab/item_id.atvx"})),
        "\"files\" has no entry for \"vocab/item_id.atvx\"",
    );
    // an index for another file: refused when loaded
    let pkg = indexed_package("index-n", atv_index_bytes(&["i1", "i2"], 0).unwrap());
    let e = load(&pkg).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidPackage);
    assert!(
        e.to_string()
            .contains("vocab/item_id.atvx: indexes 2 keys, but vocab/item_id.atv holds 3"),
        "{e}"
    );
}
