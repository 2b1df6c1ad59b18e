//! Helpers shared by the fuzz targets: the fixture packages, a scratch directory per process,
//! pools of real ids and names (so that fuzz inputs reach past "unknown id"), and the filter
//! for the known bug "a vocabulary larger than the graph's embedding table".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use atrank::spec::Spec;

/// The repository's `tests/fixtures` (compile-time path of this crate, one level up).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The two fixture packages: `tiny` (spec_version 1, one group) and `tiny-multigroup`
/// (spec_version 2, three groups, split encoder/scorer graphs).
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

    /// The package's text files (spec, vocabularies, catalogs), sorted.
    pub fn text_files(&self) -> Vec<&str> {
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
            if path.starts_with("vocab/") {
                pool.extend(String::from_utf8_lossy(bytes).lines().map(str::to_owned));
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

/// For each graph input the spec's preprocessing feeds, the largest value it can hold: the
/// vocabulary size for id and feature inputs (line k has index k+1, 0 = unknown), the number of
/// actions, the number of time buckets, `max_history` for lengths. Vocabularies are read from
/// `dir` as atrank reads them (one id per line); an unreadable one counts as 0.
pub fn max_values(spec: &Spec, dir: &Path) -> BTreeMap<String, usize> {
    let vocab = |t: usize| -> usize {
        std::fs::read_to_string(dir.join(&spec.tables[t].vocab))
            .map(|s| s.lines().count())
            .unwrap_or(0)
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
