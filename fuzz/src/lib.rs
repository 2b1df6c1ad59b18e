//! Helpers shared by the fuzz targets: the fixture packages, a scratch directory per process,
//! pools of real ids and names (so that fuzz inputs reach past "unknown id"), an independent
//! reader of atv files and model of the index rule, and the largest value of every input.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use atrank::spec::Spec;

/// The repository's `tests/fixtures` (compile-time path of this crate, one level up).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The two fixture packages (spec_version 3): `tiny` (one group) and `tiny-multigroup` (three
/// groups); both with split encoder/scorer graphs and their tables in `tables.bin`.
pub const FIXTURES: [&str; 2] = ["tiny", "tiny-multigroup"];

/// One fixture package held in memory: every file, by path relative to the package.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// `tiny` or `tiny-multigroup`.
    pub name: &'static str,
    /// The package directory in the repository.
    pub dir: PathBuf,
    /// The parsed spec.
    pub spec: Spec,
    /// Every file of the package (golden.json and README.md left out: the runtime reads
    /// neither), sorted by path.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Fixture {
    /// Reads fixture `name` from the repository; panics (harness set-up) if it is missing.
    pub fn read(name: &'static str) -> Fixture {
        let dir = fixtures_dir().join(name);
        let spec = Spec::read(&dir).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        let mut files = BTreeMap::new();
        collect(&dir, &dir, &mut files);
        files.remove("golden.json");
        files.remove("README.md");
        Fixture {
            name,
            dir,
            spec,
            files,
        }
    }

    /// The package's data files (spec.json, atv vocabularies and catalog keys, u32 catalog
    /// columns, tables.bin): everything but the graphs, sorted.
    pub fn data_files(&self) -> Vec<&str> {
        self.files
            .keys()
            .map(String::as_str)
            .filter(|f| !f.ends_with(".onnx"))
            .collect()
    }

    /// The package's graph files (`*.onnx`), sorted.
    pub fn graph_files(&self) -> Vec<&str> {
        self.files
            .keys()
            .map(String::as_str)
            .filter(|f| f.ends_with(".onnx"))
            .collect()
    }

    /// Every id, category and other feature value in the package's vocabularies, plus the
    /// package's group names, feature names and actions: strings a fuzz input can pick by
    /// index so that it reaches known objects, not only "unknown".
    pub fn pool(&self) -> Vec<String> {
        let mut pool = Vec::new();
        for (path, bytes) in &self.files {
            if path.ends_with(".atv") {
                let keys = atv_keys(bytes).expect("fixture atv file");
                pool.extend(keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()));
            }
        }
        pool.extend(self.spec.actions.iter().cloned());
        for g in &self.spec.groups {
            pool.push(g.name.clone());
            pool.extend(g.features.iter().map(|f| f.name.clone()));
        }
        pool
    }
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read_dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.insert(rel.to_string_lossy().into_owned(), bytes);
        }
    }
}

/// A scratch directory for this process, `$TMPDIR/atrank-fuzz/<target>-<pid>`, emptied when
/// first asked for. Directories of processes that are gone are removed then too, so repeated
/// runs do not pile up.
pub fn scratch_dir(target: &str) -> PathBuf {
    let base = std::env::temp_dir().join("atrank-fuzz");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = base.join(format!("{target}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The keys of an atv file, read from the layout in docs/package-format-v3.md ("The atv
/// file") independently of the runtime's reader; `None` when the file is not a well-formed atv
/// file (every offset bounds-checked).
pub fn atv_keys(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let u64_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(8)?)?;
        usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok()
    };
    if bytes.get(..8)? != b"ATRVOC01" {
        return None;
    }
    let n = u64_at(8)?;
    let keys_at = n.checked_add(1)?.checked_mul(8)?.checked_add(32)?;
    if keys_at > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n.min(bytes.len()));
    for k in 0..n {
        let (a, b) = (u64_at(32 + 8 * k)?, u64_at(40 + 8 * k)?);
        out.push(
            bytes
                .get(keys_at.checked_add(a)?..keys_at.checked_add(b)?)?
                .to_vec(),
        );
    }
    Some(out)
}

/// An atv file of `keys` in the order given (the runtime's writer refuses keys out of order
/// or repeated; a damaged package may hold them so).
pub fn atv_any_order(keys: &[Vec<u8>]) -> Vec<u8> {
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

/// An independent model of one table's index rule (docs "Indices"): key k -> k + 1; an unseen
/// string -> `n + 1 + xxh3_64(s, seed) mod hash_buckets` when there are buckets, else 0.
#[derive(Debug, Clone)]
pub struct Vocab {
    index: HashMap<Vec<u8>, i64>,
    n: usize,
    hash_buckets: u64,
    seed: u64,
}

impl Vocab {
    /// Reads a well-formed atv file (`None` otherwise).
    pub fn read(bytes: &[u8], hash_buckets: u64, seed: u64) -> Option<Vocab> {
        let keys = atv_keys(bytes)?;
        let n = keys.len();
        let index = keys
            .into_iter()
            .enumerate()
            .map(|(k, key)| (key, k as i64 + 1))
            .collect();
        Some(Vocab {
            index,
            n,
            hash_buckets,
            seed,
        })
    }

    /// The index of `s`.
    pub fn get(&self, s: &str) -> i64 {
        match self.index.get(s.as_bytes()) {
            Some(&i) => i,
            None if self.hash_buckets > 0 => {
                // The hash function itself is the xxhash crate's, which the runtime re-exports.
                let h = atrank::vocab::xxh3_64(s.as_bytes(), self.seed);
                (self.n as u64 + 1 + h % self.hash_buckets) as i64
            }
            None => 0,
        }
    }

    /// The largest index the table can produce: keys + hashed buckets.
    pub fn max_index(&self) -> usize {
        self.n + self.hash_buckets as usize
    }
}

/// For each graph input the spec's preprocessing feeds, the largest value it can hold: the
/// table's keys plus hashed buckets for id and feature inputs (key k has index k+1, 0 =
/// unknown), the number of actions, the number of time buckets, `max_history` for lengths.
/// The keys are counted from each atv file's header in `dir` (the `n` the runtime checks at
/// open); an unreadable one counts as 0.
pub fn max_values(spec: &Spec, dir: &Path) -> BTreeMap<String, usize> {
    let vocab = |t: usize| -> usize {
        let table = &spec.tables[t];
        let n = std::fs::read(dir.join(&table.vocab))
            .ok()
            .and_then(|b| {
                b.get(8..16)
                    .map(|h| u64::from_le_bytes(h.try_into().unwrap_or([0; 8])))
            })
            .unwrap_or(0);
        usize::try_from(n.saturating_add(table.hash_buckets)).unwrap_or(usize::MAX)
    };
    let mut out = BTreeMap::new();
    for g in &spec.groups {
        for f in &g.features {
            out.insert(f.input.clone(), vocab(f.table));
        }
        out.insert(g.action_input.clone(), spec.actions.len());
        out.insert(g.time_input.clone(), spec.time_buckets.boundaries.len());
        out.insert(g.length_input.clone(), g.max_history);
    }
    let target = spec.target_group();
    for (f, input) in &spec.candidate_inputs {
        out.insert(input.clone(), vocab(target.features[*f].table));
    }
    out
}

/// Lets panics raised inside tract's call tree unwind to the runtime's guard instead of
/// aborting at once; every other panic still reaches the hook installed before (libFuzzer's,
/// which aborts: a crash). tract's ONNX import and optimiser panic on some malformed graphs
/// (an `Unsqueeze` axis beyond the rank, found by graph_load, panics in `smallvec` called from
/// tract-hir); the runtime catches those around tract's load, plan building and run and
/// returns an error, which is what the targets then check. "In tract's call tree" is read off
/// the stack (a frame of a `tract_*` crate), not the panic's location, which may be a
/// dependency of tract. A tract panic the runtime does not catch still unwinds into
/// libfuzzer-sys, which aborts: it stays a crash. Call once, from a target's initialisation.
pub fn let_tract_panics_reach_the_runtime_guard() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let stack = std::backtrace::Backtrace::force_capture().to_string();
            let in_tract = [
                "tract_hir::",
                "tract_onnx::",
                "tract_core::",
                "tract_data::",
                "tract_linalg::",
            ]
            .iter()
            .any(|c| stack.contains(c));
            if !in_tract {
                previous(info);
            }
        }));
    });
}
