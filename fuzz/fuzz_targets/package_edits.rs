// Shared by the package_load and package_files targets (`include!`d; not a target itself): the
// fixture packages in memory, the edits a fuzz input makes to them, and writing the result to
// the process's scratch directory. The including file defines `const TARGET: &str`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use atrank::{Backend, Behavior, ErrorCode, LoadOptions, Model, Request};
use atrank_fuzz::{atv_any_order, atv_keys, scratch_dir, Fixture, FIXTURES};
use serde_json::Value;

struct Base {
    fixture: Fixture,
    /// Every JSON pointer in the fixture's spec.json (objects' keys and arrays' elements).
    pointers: Vec<String>,
    /// Strings a spec field may be set to: the package's own names, ids and file names, and
    /// paths that try to leave the package.
    strings: Vec<String>,
}

struct State {
    bases: [Base; 2],
    dir: PathBuf,
}

fn state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| {
        atrank_fuzz::let_tract_panics_reach_the_runtime_guard();
        let bases = FIXTURES.map(|name| {
            let fixture = Fixture::read(name);
            let spec: Value =
                serde_json::from_slice(&fixture.files["spec.json"]).expect("fixture spec");
            let mut pointers = Vec::new();
            walk(&spec, String::new(), &mut pointers);
            let mut strings = fixture.pool();
            strings.extend(fixture.files.keys().cloned());
            strings.extend(
                [
                    "",
                    ".",
                    "..",
                    "../spec.json",
                    "/etc/passwd",
                    "vocab",
                    "vocab/",
                    "a/../spec.json",
                    "./spec.json",
                    "\0",
                ]
                .map(str::to_owned),
            );
            for g in &fixture.spec.groups {
                strings.extend(g.features.iter().map(|f| f.input.clone()));
                strings.extend([
                    g.action_input.clone(),
                    g.time_input.clone(),
                    g.length_input.clone(),
                ]);
            }
            Base {
                fixture,
                pointers,
                strings,
            }
        });
        State {
            bases,
            dir: scratch_dir(TARGET).join("pkg"),
        }
    })
}

fn walk(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                walk(v, p, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                walk(v, p, out);
            }
        }
        _ => {}
    }
}

/// A JSON value to put into the spec.
#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Edge(u8),
    Float(f64),
    /// One of the package's strings (or a path leaving it).
    Known(u16),
    Str(String),
    /// The value at another pointer of the same spec (swaps names, tables, files).
    CopyOf(u16),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

const EDGES: [i64; 10] = [
    0,
    1,
    -1,
    2,
    3,
    1 << 20,
    (1 << 20) + 1,
    i64::MAX,
    i64::MIN,
    u32::MAX as i64 + 1,
];

impl Json {
    fn value(&self, base: &Base, spec: &Value, depth: u32) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::Edge(k) => match *k % 12 {
                10 => Value::from(u64::MAX),
                11 => serde_json::from_str("1e400").unwrap_or(Value::Null),
                k => Value::from(EDGES[k as usize]),
            },
            Json::Float(f) => Value::from(*f),
            Json::Known(k) => Value::from(base.strings[*k as usize % base.strings.len()].clone()),
            Json::Str(s) => Value::from(s.clone()),
            Json::CopyOf(k) => {
                let p = &base.pointers[*k as usize % base.pointers.len()];
                spec.pointer(p).cloned().unwrap_or(Value::Null)
            }
            Json::Array(items) if depth < 3 => Value::Array(
                items
                    .iter()
                    .map(|j| j.value(base, spec, depth + 1))
                    .collect(),
            ),
            Json::Object(items) if depth < 3 => Value::Object(
                items
                    .iter()
                    .map(|(k, j)| (k.clone(), j.value(base, spec, depth + 1)))
                    .collect(),
            ),
            Json::Array(_) | Json::Object(_) => Value::Null,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Edit {
    /// Sets the spec field at pointer `at` (an index into the fixture's pointers).
    SetField { at: u16, value: Json },
    /// Removes the spec field at pointer `at`.
    RemoveField { at: u16 },
    /// Replaces a data file (spec.json, an atv vocabulary or catalog's keys, a u32 column,
    /// tables.bin) with these bytes.
    Replace { file: u8, bytes: Vec<u8> },
    /// Removes `remove` bytes at `at` of a data file and inserts `insert` there.
    Splice {
        file: u8,
        at: u32,
        remove: u16,
        insert: Vec<u8>,
    },
    /// Adds keys to an atv file, kept a well-formed atv file: sorted (a vocabulary larger than
    /// the graph's table, or than the spec's `size`) or in the order given (keys out of order,
    /// repeated keys).
    AppendKeys {
        file: u8,
        keys: Vec<String>,
        sorted: bool,
    },
    /// Repeats key `key` of an atv file right after itself (a duplicate id).
    DuplicateKey { file: u8, key: u16 },
    /// Writes a little-endian u32 at byte `at` (mod the file's length) of a data file: a catalog
    /// column's value, an atv header field or offset, a table's bytes in tables.bin.
    SetU32 { file: u8, at: u32, value: u32 },
    /// Writes a little-endian u64 at byte `at` (mod the file's length) of a data file (an atv
    /// file's `n`, `key_bytes`, `reserved` or offsets).
    SetU64 { file: u8, at: u32, value: u64 },
    /// Truncates a data file to `len` bytes.
    Truncate { file: u8, len: u32 },
    /// Deletes a file of the package (a graph file when `graph`).
    Delete { file: u8, graph: bool },
    /// Removes `remove` bytes at `at` of a graph file and inserts `insert` there (slow: tract
    /// parses the result).
    SpliceGraph {
        file: u8,
        at: u32,
        remove: u16,
        insert: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    multigroup: bool,
    /// Leave spec.json's `files` manifest as the edits left it (usually stale, so loading stops
    /// at the manifest check); otherwise it is recomputed after the edits, so edited files
    /// reach the checks and parsers behind the manifest.
    stale_manifest: bool,
    edits: Vec<Edit>,
    cache_capacity: u8,
    tract_plans: u8,
}

fn pick<'a>(names: &[&'a str], k: u8) -> &'a str {
    names[k as usize % names.len()]
}

fn splice(bytes: &mut Vec<u8>, at: u32, remove: u16, insert: &[u8]) {
    let at = (at as usize).min(bytes.len());
    let end = (at + remove as usize).min(bytes.len());
    bytes.splice(at..end, insert.iter().copied());
}

fn apply(base: &Base, files: &mut BTreeMap<String, Vec<u8>>, edit: &Edit) {
    let text = base.fixture.data_files();
    let graphs = base.fixture.graph_files();
    match edit {
        Edit::SetField { at, .. } | Edit::RemoveField { at } if files.contains_key("spec.json") => {
            let Ok(mut spec) = serde_json::from_slice::<Value>(&files["spec.json"]) else {
                return;
            };
            let p = &base.pointers[*at as usize % base.pointers.len()];
            let (parent, key) = p.rsplit_once('/').expect("pointers start with /");
            let new = match edit {
                Edit::SetField { value, .. } => Some(value.value(base, &spec, 0)),
                _ => None,
            };
            match spec.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    let key = key.replace("~1", "/").replace("~0", "~");
                    match new {
                        Some(v) => {
                            m.insert(key, v);
                        }
                        None => {
                            m.remove(&key);
                        }
                    }
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        match new {
                            Some(v) if i < a.len() => a[i] = v,
                            None if i < a.len() => {
                                a.remove(i);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            files.insert(
                "spec.json".into(),
                serde_json::to_vec_pretty(&spec).expect("serialise"),
            );
        }
        Edit::SetField { .. } | Edit::RemoveField { .. } => {}
        Edit::Replace { file, bytes } => {
            files.insert(pick(&text, *file).into(), bytes.clone());
        }
        Edit::Splice {
            file,
            at,
            remove,
            insert,
        } => {
            if let Some(b) = files.get_mut(pick(&text, *file)) {
                splice(b, *at, *remove, insert);
            }
        }
        Edit::AppendKeys { file, keys, sorted } => {
            if let Some(b) = files.get_mut(pick(&text, *file)) {
                if let Some(mut all) = atv_keys(b) {
                    all.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
                    if *sorted {
                        all.sort();
                        all.dedup();
                    }
                    *b = atv_any_order(&all);
                }
            }
        }
        Edit::DuplicateKey { file, key } => {
            if let Some(b) = files.get_mut(pick(&text, *file)) {
                if let Some(mut all) = atv_keys(b) {
                    if !all.is_empty() {
                        let k = *key as usize % all.len();
                        all.insert(k, all[k].clone());
                        *b = atv_any_order(&all);
                    }
                }
            }
        }
        Edit::SetU32 { file, at, value } => {
            if let Some(b) = files.get_mut(pick(&text, *file)) {
                if b.len() >= 4 {
                    let at = *at as usize % (b.len() - 3);
                    b[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        Edit::SetU64 { file, at, value } => {
            if let Some(b) = files.get_mut(pick(&text, *file)) {
                if b.len() >= 8 {
                    let at = *at as usize % (b.len() - 7);
                    b[at..at + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        Edit::Truncate { file, len } => {
            if let Some(b) = files.get_mut(pick(&text, *file)) {
                b.truncate(*len as usize);
            }
        }
        Edit::Delete { file, graph } => {
            files.remove(pick(if *graph { &graphs } else { &text }, *file));
        }
        Edit::SpliceGraph {
            file,
            at,
            remove,
            insert,
        } => {
            if let Some(b) = files.get_mut(pick(&graphs, *file)) {
                splice(b, *at, *remove, insert);
            }
        }
    }
}

/// Recomputes the size and SHA-256 of every file that spec.json's `files` manifest lists and
/// the package holds (what the exporter's `manifest` command does), when spec.json is JSON
/// with a `files` object; anything else is left as the edits made it.
fn rehash(files: &mut BTreeMap<String, Vec<u8>>) {
    let Some(Ok(mut spec)) = files
        .get("spec.json")
        .map(|b| serde_json::from_slice::<Value>(b))
    else {
        return;
    };
    let Some(manifest) = spec.get_mut("files").and_then(Value::as_object_mut) else {
        return;
    };
    for (rel, entry) in manifest.iter_mut() {
        if let Some(bytes) = files.get(rel.as_str()) {
            *entry = serde_json::json!({
                "sha256": atrank::package::sha256_hex(bytes),
                "bytes": bytes.len(),
            });
        }
    }
    if let Ok(text) = serde_json::to_vec(&spec) {
        files.insert("spec.json".into(), text);
    }
}

fn write_package(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let _ = std::fs::remove_dir_all(dir);
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("scratch dir");
        std::fs::write(&path, bytes).expect("scratch file");
    }
    std::fs::create_dir_all(dir).expect("scratch dir");
}

fn not_a_panic(r: &atrank::Result<impl Sized>, what: &str) {
    if let Err(e) = r {
        assert_ne!(e.code(), ErrorCode::Panic, "{what}: {e}");
    }
}
