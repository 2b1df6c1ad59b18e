//! The model package's `spec.json`, format version 3 (`docs/package-format-v3.md`), the only
//! version this runtime reads: any other `spec_version` is refused with an error that names it.
//!
//! A spec is read into one normalized [`Spec`]: embedding tables (memory-mapped atv
//! vocabularies with their sizes and hashed buckets), behavior groups with their features,
//! graph inputs and catalogs (atv keys plus u32 columns), the target group whose objects are
//! the candidates, actions, time buckets, limits, the graphs (with their external data,
//! `tables.bin`) and the `files` manifest.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// The value of `format` every spec must carry.
pub const FORMAT: &str = "atrank-model-package";
/// The spec versions this runtime reads.
pub const SPEC_VERSIONS: [u32; 1] = [3];
/// Upper bound on any `max_history`, `max_candidates` or `max_behaviors` a spec may ask for,
/// so a corrupt spec cannot make the runtime allocate without bound.
pub const HARD_LIMIT: usize = 1 << 20;
/// The most rows an embedding table may have (`size + 1 + hash_buckets`), and the most rows
/// of a catalog: every index fits a u32 catalog column.
const MAX_TABLE_ROWS: u64 = u32::MAX as u64;
/// The one hash function the format knows (docs "Indices").
const HASH_FUNCTION: &str = "xxh3_64";
/// Longest table, group or feature name.
const MAX_NAME_BYTES: usize = 256;

/// A parsed and validated package spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `spec_version` the package was written with (always 3: the only one read).
    pub version: u32,
    /// `created_by`: what wrote the package (informational), if it says.
    pub created_by: Option<String>,
    /// `input_mapping`, as compact JSON, if the package has one: what each action means and
    /// the rule that produced it, each feature's source, the order of equal timestamps, how
    /// time is bucketed (written by the exporter from the reader that built the training data;
    /// docs/package-format.md). Informational: nothing at run time depends on it.
    pub input_mapping: Option<String>,
    /// A human-readable model name.
    pub name: String,
    /// The encode-once ONNX graph, relative to the package.
    pub graph_file: String,
    /// The graph's input names, in graph order.
    pub inputs: Vec<String>,
    /// The graph's output name (float32 `[B, N]` logits).
    pub output: String,
    /// Embedding tables: name, vocabulary file (relative to the package), size and buckets.
    pub tables: Vec<TableSpec>,
    /// Behavior groups, in graph order.
    pub groups: Vec<GroupSpec>,
    /// Index into `groups` of the group whose objects are scored.
    pub target: usize,
    /// Candidate inputs: (index into the target group's features, input name).
    pub candidate_inputs: Vec<(usize, String)>,
    /// Action vocabulary: `actions[k]` has index k+1, anything else 0.
    pub actions: Vec<String>,
    /// Time bucketing relative to the request time.
    pub time_buckets: TimeBuckets,
    /// Request size limits.
    pub limits: Limits,
    /// The split pair of graphs (user encoder, candidate scorer), if the package has them.
    pub split: Option<SplitSpec>,
    /// The manifest: size and SHA-256 of every file the spec names (graphs, external data,
    /// vocabularies, catalog keys and columns), checked before a file is used.
    pub files: BTreeMap<String, FileDigest>,
    /// The graphs' external data files (`graph.external_data`, e.g. `tables.bin`).
    pub external_data: Vec<String>,
    /// `graph.precision`: the arithmetic of the graphs' dense projections (float32 when the
    /// spec does not say).
    pub precision: Precision,
    /// `hash.seed` of the hashed buckets (`hash.function` is `xxh3_64`).
    pub hash_seed: u64,
    /// `atv_index`: (atv file, its hashed index file), for the atv files that have one
    /// (docs/package-format.md, "The atv index file"). Optional: a lookup in an atv file
    /// without one is a search of the sorted keys, with the same answers.
    pub atv_index: BTreeMap<String, String>,
}

/// `graph.precision`: how the graphs' dense projections compute (docs/package-format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float32 throughout; every backend runs it.
    #[default]
    Float32,
    /// Dynamically quantized projections (int8 weights, activations quantized per call;
    /// `export --precision int8`). For ONNX Runtime only: tract runs such a graph several
    /// times slower than the float32 one, so loading it on tract is refused.
    Int8,
}

/// One entry of the spec's `files` manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// The split pair: `encoder` turns the behavior tensors into an encoding; `scorer` scores
/// candidates from an encoding. Chained they compute what the encode-once graph computes.
#[derive(Debug, Clone)]
pub struct SplitSpec {
    /// Encoder graph file, relative to the package.
    pub encoder_file: String,
    /// Encoder outputs: the encoding `[B, L, H]` and its mask `[B, L]` (float32).
    pub encoder_outputs: Vec<String>,
    /// Scorer graph file, relative to the package.
    pub scorer_file: String,
    /// Scorer inputs: the encoder's outputs, then the candidate inputs.
    pub scorer_inputs: Vec<String>,
    /// Scorer output (float32 `[B, N]` logits).
    pub scorer_output: String,
}

/// One embedding table: its atv vocabulary and the rows reserved for unseen keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name (e.g. `item_id`, `category`).
    pub name: String,
    /// Vocabulary file (atv), relative to the package: key k has index k+1.
    pub vocab: String,
    /// Keys in the vocabulary file (`size`).
    pub size: u64,
    /// Rows reserved for unseen keys (`hash_buckets`, docs "Indices").
    pub hash_buckets: u64,
}

/// One behavior group.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Group name (object type).
    pub name: String,
    /// Most recent behaviors of this group kept per request.
    pub max_history: usize,
    /// Features; the first is the object id.
    pub features: Vec<FeatureSpec>,
    /// Input name of the action tensor.
    pub action_input: String,
    /// Input name of the time-bucket tensor.
    pub time_input: String,
    /// Input name of the length tensor.
    pub length_input: String,
    /// The group's catalog (object id -> features), if any.
    pub catalog: Option<CatalogSpec>,
}

/// One feature of a group.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    /// Feature name (`id`, `category`, `shop`, ...).
    pub name: String,
    /// Index into [`Spec::tables`].
    pub table: usize,
    /// Graph input name.
    pub input: String,
}

/// A group's catalog: an atv file of the objects' keys and one u32 column per catalog feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSpec {
    /// The keys' atv file.
    pub keys: String,
    /// Objects (keys) in the catalog.
    pub rows: u64,
    /// (index of the feature in the group, column file), in feature order.
    pub columns: Vec<(usize, String)>,
}

/// Time bucketing: `d = floor(req/unit) - floor(t/unit) + offset`; bucket = #{b <= d}.
#[derive(Debug, Clone, Deserialize)]
pub struct TimeBuckets {
    /// Seconds per time unit (86400: days).
    pub unit_seconds: i64,
    /// Added to the difference in units.
    pub offset: i64,
    /// Ascending bucket boundaries.
    pub boundaries: Vec<i64>,
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    /// Most candidates one request may carry.
    pub max_candidates: usize,
    /// Most behaviors one request may carry (before truncation to `max_history`).
    pub max_behaviors: usize,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    /// Any JSON value, so that a wrong one (`"3"`, `2.5`) is named in the error.
    spec_version: serde_json::Value,
    #[serde(default)]
    files: Option<BTreeMap<String, FileDigest>>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    name: String,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    input_mapping: Option<serde_json::Value>,
    graph: RawGraph,
    hash: RawHash,
    tables: BTreeMap<String, RawTable>,
    groups: Vec<RawGroup>,
    target_group: String,
    candidate_inputs: BTreeMap<String, String>,
    actions: Vec<String>,
    time_buckets: TimeBuckets,
    limits: Limits,
    #[serde(default)]
    atv_index: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawGraph {
    file: String,
    inputs: Vec<String>,
    output: String,
    #[serde(default)]
    encoder: Option<RawEncoder>,
    #[serde(default)]
    scorer: Option<RawScorer>,
    #[serde(default)]
    external_data: Vec<String>,
    #[serde(default)]
    precision: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawEncoder {
    file: String,
    outputs: Vec<String>,
}

#[derive(Deserialize)]
struct RawScorer {
    file: String,
    inputs: Vec<String>,
    output: String,
}

#[derive(Deserialize)]
struct RawHash {
    function: String,
    seed: u64,
}

#[derive(Deserialize)]
struct RawTable {
    vocab: String,
    size: u64,
    hash_buckets: u64,
}

#[derive(Deserialize)]
struct RawGroup {
    name: String,
    max_history: usize,
    features: Vec<RawFeature>,
    inputs: RawGroupInputs,
    #[serde(default)]
    catalog: Option<RawCatalog>,
}

#[derive(Deserialize)]
struct RawFeature {
    name: String,
    table: String,
    input: String,
}

#[derive(Deserialize)]
struct RawGroupInputs {
    action: String,
    time_bucket: String,
    length: String,
}

#[derive(Deserialize)]
struct RawCatalog {
    keys: String,
    rows: u64,
    columns: BTreeMap<String, String>,
}

fn bad<T>(msg: impl std::fmt::Display) -> Result<T> {
    Err(Error::package(format!("spec.json: {msg}")))
}

impl Spec {
    /// Parses and validates a spec from JSON text.
    pub fn from_json(text: &str) -> Result<Spec> {
        let json = |e: serde_json::Error| Error::package(format!("spec.json: {e}"));
        let header: Header = serde_json::from_str(text).map_err(json)?;
        if header.format != FORMAT {
            return bad(format!(
                "format is {:?}, expected {FORMAT:?}",
                header.format
            ));
        }
        if header.spec_version.as_u64() != Some(3) {
            return bad(format!(
                "spec_version {} is not supported: this runtime reads spec_version 3 only \
                 (re-export the package with the current exporter)",
                header.spec_version
            ));
        }
        let mut spec = Spec::from_raw(serde_json::from_str(text).map_err(json)?)?;
        let Some(files) = header.files else {
            return bad(
                "no \"files\" manifest (size and sha256 of every file the spec names); \
                 re-export the package or run `python -m atrank_export manifest --package DIR`",
            );
        };
        spec.files = files;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads, parses and validates `spec.json` of the package in `dir` (a regular file inside
    /// the package, at most [`crate::package::MAX_SPEC_BYTES`]).
    pub fn read(dir: &Path) -> Result<Spec> {
        let pkg = crate::package::PackageDir::open(dir)?;
        Spec::read_from(&pkg)
    }

    /// [`Spec::read`] from an already resolved package directory.
    pub fn read_from(pkg: &crate::package::PackageDir) -> Result<Spec> {
        let text = pkg.read_text("spec.json", crate::package::MAX_SPEC_BYTES, None)?;
        Spec::from_json(&text)
    }

    /// Every file the spec names (graphs, external data, vocabularies, catalog keys and
    /// columns), each once.
    pub fn referenced_files(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![self.graph_file.as_str()];
        if let Some(sp) = &self.split {
            out.extend([sp.encoder_file.as_str(), sp.scorer_file.as_str()]);
        }
        out.extend(self.external_data.iter().map(String::as_str));
        out.extend(self.tables.iter().map(|t| t.vocab.as_str()));
        for c in self.groups.iter().filter_map(|g| g.catalog.as_ref()) {
            out.push(&c.keys);
            out.extend(c.columns.iter().map(|(_, f)| f.as_str()));
        }
        out.extend(self.atv_index.values().map(String::as_str));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The manifest entry of `file` (validation guarantees one for every referenced file).
    pub fn digest(&self, file: &str) -> Result<&FileDigest> {
        self.files.get(file).ok_or_else(|| {
            Error::package(format!("spec.json: \"files\" has no entry for {file:?}"))
        })
    }

    /// The group whose objects are the candidates.
    pub fn target_group(&self) -> &GroupSpec {
        &self.groups[self.target]
    }

    /// The index of the group called `name`.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }

    fn from_raw(raw: Raw) -> Result<Spec> {
        if raw.hash.function != HASH_FUNCTION {
            return bad(format!(
                "hash.function {:?} is not supported (only {HASH_FUNCTION:?})",
                raw.hash.function
            ));
        }
        if raw.graph.external_data.len() > 64 {
            return bad("graph.external_data names more than 64 files");
        }
        let mut tables = Vec::with_capacity(raw.tables.len());
        for (name, t) in &raw.tables {
            let rows = t
                .size
                .checked_add(1)
                .and_then(|n| n.checked_add(t.hash_buckets));
            if rows.is_none_or(|n| n > MAX_TABLE_ROWS) {
                return bad(format!(
                    "tables.{name}: size {} + 1 + hash_buckets {} is more than {MAX_TABLE_ROWS} rows",
                    t.size, t.hash_buckets
                ));
            }
            tables.push(TableSpec {
                name: name.clone(),
                vocab: t.vocab.clone(),
                size: t.size,
                hash_buckets: t.hash_buckets,
            });
        }
        let table_index = |name: &str, at: &str| -> Result<usize> {
            match tables.iter().position(|t| t.name == name) {
                Some(i) => Ok(i),
                None => bad(format!("{at}: table {name:?} is not in \"tables\"")),
            }
        };
        let mut groups = Vec::with_capacity(raw.groups.len());
        for (gi, g) in raw.groups.into_iter().enumerate() {
            let mut features = Vec::with_capacity(g.features.len());
            for (fi, f) in g.features.into_iter().enumerate() {
                features.push(FeatureSpec {
                    table: table_index(&f.table, &format!("groups[{gi}].features[{fi}]"))?,
                    name: f.name,
                    input: f.input,
                });
            }
            if features.first().map(|f| f.name.as_str()) != Some("id") {
                return bad(format!("groups[{gi}] must list the \"id\" feature first"));
            }
            let catalog = match g.catalog {
                None => None,
                Some(c) => {
                    if c.rows > MAX_TABLE_ROWS {
                        return bad(format!(
                            "groups[{gi}].catalog.rows {} is more than {MAX_TABLE_ROWS}",
                            c.rows
                        ));
                    }
                    let mut columns = Vec::with_capacity(c.columns.len());
                    for (feature, file) in c.columns {
                        match features.iter().position(|f| f.name == feature) {
                            Some(0) => {
                                return bad(format!(
                                    "groups[{gi}].catalog.columns: \"id\" is the catalog's key, not a column"
                                ))
                            }
                            Some(f) => columns.push((f, file)),
                            None => {
                                return bad(format!(
                                    "groups[{gi}].catalog.columns names {feature:?}, not a feature of group {:?}",
                                    g.name
                                ))
                            }
                        }
                    }
                    columns.sort();
                    Some(CatalogSpec {
                        keys: c.keys,
                        rows: c.rows,
                        columns,
                    })
                }
            };
            groups.push(GroupSpec {
                name: g.name,
                max_history: g.max_history,
                features,
                action_input: g.inputs.action,
                time_input: g.inputs.time_bucket,
                length_input: g.inputs.length,
                catalog,
            });
        }
        let Some(target) = groups.iter().position(|g| g.name == raw.target_group) else {
            return bad(format!(
                "target_group {:?} is not a group",
                raw.target_group
            ));
        };
        let mut candidate_inputs = Vec::new();
        for (feature, input) in &raw.candidate_inputs {
            match groups[target]
                .features
                .iter()
                .position(|f| &f.name == feature)
            {
                Some(i) => candidate_inputs.push((i, input.clone())),
                None => {
                    return bad(format!(
                        "candidate_inputs names {feature:?}, not a feature of {:?}",
                        raw.target_group
                    ))
                }
            }
        }
        candidate_inputs.sort();
        if candidate_inputs.first().map(|c| c.0) != Some(0) {
            return bad("candidate_inputs must include \"id\"");
        }
        let split = match (raw.graph.encoder, raw.graph.scorer) {
            (Some(e), Some(s)) => Some(SplitSpec {
                encoder_file: e.file,
                encoder_outputs: e.outputs,
                scorer_file: s.file,
                scorer_inputs: s.inputs,
                scorer_output: s.output,
            }),
            (None, None) => None,
            _ => return bad("graph.encoder and graph.scorer come together or not at all"),
        };
        let precision = match raw.graph.precision {
            None => Precision::Float32,
            Some(v) => match serde_json::from_value::<Precision>(v.clone()) {
                Ok(p) => p,
                Err(_) => {
                    return bad(format!(
                        "graph.precision is {v}; this runtime reads \"float32\" or \"int8\""
                    ))
                }
            },
        };
        Ok(Spec {
            split,
            precision,
            version: 3,
            created_by: raw.created_by,
            input_mapping: raw
                .input_mapping
                .filter(|m| !m.is_null())
                .map(|m| m.to_string()),
            name: raw.name,
            graph_file: raw.graph.file,
            inputs: raw.graph.inputs,
            output: raw.graph.output,
            tables,
            groups,
            target,
            candidate_inputs,
            actions: raw.actions,
            time_buckets: raw.time_buckets,
            limits: raw.limits,
            files: BTreeMap::new(),
            external_data: raw.graph.external_data,
            hash_seed: raw.hash.seed,
            atv_index: raw.atv_index,
        })
    }

    /// Every tensor the preprocessing produces must be a graph input, and the reverse.
    fn produced_inputs(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for g in &self.groups {
            out.extend(g.features.iter().map(|f| f.input.as_str()));
            out.extend([
                g.action_input.as_str(),
                g.time_input.as_str(),
                g.length_input.as_str(),
            ]);
        }
        out.extend(self.candidate_inputs.iter().map(|(_, n)| n.as_str()));
        out
    }

    fn validate(&self) -> Result<()> {
        if self.groups.is_empty() {
            return bad("no groups");
        }
        for (i, g) in self.groups.iter().enumerate() {
            if g.max_history == 0 || g.max_history > HARD_LIMIT {
                return bad(format!(
                    "groups[{i}].max_history {} is out of range",
                    g.max_history
                ));
            }
            if self.groups[..i].iter().any(|h| h.name == g.name) {
                return bad(format!("group {:?} is listed twice", g.name));
            }
        }
        let mut produced = self.produced_inputs();
        let mut graph: Vec<&str> = self.inputs.iter().map(String::as_str).collect();
        produced.sort_unstable();
        graph.sort_unstable();
        if produced.windows(2).any(|w| w[0] == w[1]) {
            return bad("two tensors share one input name");
        }
        if produced != graph {
            return bad(format!(
                "graph inputs {graph:?} do not match the inputs the groups name {produced:?}"
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.actions {
            if !seen.insert(a.as_str()) {
                return bad(format!("actions lists {a:?} twice"));
            }
        }
        let tb = &self.time_buckets;
        if tb.unit_seconds <= 0 {
            return bad(format!(
                "time_buckets.unit_seconds {} must be positive",
                tb.unit_seconds
            ));
        }
        if tb.boundaries.windows(2).any(|w| w[0] > w[1]) {
            return bad("time_buckets.boundaries must be ascending");
        }
        let l = &self.limits;
        if l.max_candidates == 0 || l.max_candidates > HARD_LIMIT {
            return bad(format!(
                "limits.max_candidates {} is out of range",
                l.max_candidates
            ));
        }
        if l.max_behaviors == 0 || l.max_behaviors > HARD_LIMIT {
            return bad(format!(
                "limits.max_behaviors {} is out of range",
                l.max_behaviors
            ));
        }
        check_relative("graph file", &self.graph_file)?;
        if let Some(sp) = &self.split {
            check_relative("graph.encoder.file", &sp.encoder_file)?;
            check_relative("graph.scorer.file", &sp.scorer_file)?;
            if sp.encoder_outputs.len() != 2 {
                return bad("graph.encoder.outputs must name the encoding and its mask");
            }
            let mut want = sp.encoder_outputs.clone();
            want.extend(self.candidate_inputs.iter().map(|(_, n)| n.clone()));
            let (mut a, mut b) = (want, sp.scorer_inputs.clone());
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                return bad(format!(
                    "graph.scorer.inputs {b:?} must be the encoder outputs plus the candidate inputs {a:?}"
                ));
            }
        }
        for t in &self.tables {
            check_name("table", &t.name)?;
            check_relative("vocab", &t.vocab)?;
        }
        for g in &self.groups {
            check_name("group", &g.name)?;
            for f in &g.features {
                check_name("feature", &f.name)?;
            }
            if let Some(c) = &g.catalog {
                check_relative("catalog.keys", &c.keys)?;
                for (_, file) in &c.columns {
                    check_relative("catalog column", file)?;
                }
            }
        }
        for (i, file) in self.external_data.iter().enumerate() {
            check_relative("graph.external_data", file)?;
            if self.external_data[..i].contains(file) {
                return bad(format!("graph.external_data lists {file:?} twice"));
            }
        }
        let is_atv = |file: &str| {
            self.tables.iter().any(|t| t.vocab == file)
                || self
                    .groups
                    .iter()
                    .filter_map(|g| g.catalog.as_ref())
                    .any(|c| c.keys == file)
        };
        for (atv, index) in &self.atv_index {
            check_relative("atv_index value", index)?;
            if !is_atv(atv) {
                return bad(format!(
                    "atv_index has an entry for {atv:?}, which is not a table's vocab or a catalog's keys"
                ));
            }
            if let Some((other, _)) = self
                .atv_index
                .iter()
                .find(|(a, i)| *i == index && *a != atv)
            {
                return bad(format!(
                    "atv_index names {index:?} for both {other:?} and {atv:?}"
                ));
            }
            if is_atv(index) {
                return bad(format!(
                    "atv_index value {index:?} is an atv file of the spec"
                ));
            }
        }
        let referenced = self.referenced_files();
        for file in &referenced {
            if !self.files.contains_key(*file) {
                return bad(format!("\"files\" has no entry for {file:?}"));
            }
        }
        for (file, d) in &self.files {
            if !referenced.contains(&file.as_str()) {
                return bad(format!(
                    "\"files\" lists {file:?}, which the spec does not name"
                ));
            }
            if d.sha256.len() != 64
                || !d
                    .sha256
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            {
                return bad(format!(
                    "files[{file:?}].sha256 must be 64 lower-case hex digits"
                ));
            }
        }
        self.validate_sizes()
    }

    /// What the manifest's sizes say about the atv files and columns, checked
    /// before any file is opened (the files are checked again when mapped).
    fn validate_sizes(&self) -> Result<()> {
        let bytes = |file: &str| self.files.get(file).map_or(0, |d| d.bytes);
        // An atv file of n keys has at least 32 + 8 (n + 1) + n bytes (keys are non-empty).
        let atv_fits = |file: &str, n: u64, what: &str| -> Result<()> {
            let least = n.saturating_mul(9).saturating_add(40);
            if bytes(file) < least {
                return bad(format!(
                    "{what} {file:?} has {} bytes in \"files\", too few for {n} keys (at least {least})",
                    bytes(file)
                ));
            }
            Ok(())
        };
        for t in &self.tables {
            atv_fits(&t.vocab, t.size, &format!("tables.{}.vocab", t.name))?;
        }
        for g in &self.groups {
            let Some(CatalogSpec {
                keys,
                rows,
                columns,
            }) = &g.catalog
            else {
                continue;
            };
            atv_fits(keys, *rows, &format!("group {:?}: catalog.keys", g.name))?;
            // The same file as a table's vocabulary must hold as many keys as the table.
            if let Some(t) = self.tables.iter().find(|t| &t.vocab == keys) {
                if t.size != *rows {
                    return bad(format!(
                        "group {:?}: catalog.keys {keys:?} is table {:?}'s vocabulary of {} keys, but catalog.rows is {rows}",
                        g.name, t.name, t.size
                    ));
                }
            }
            for (_, file) in columns {
                if bytes(file) != rows.saturating_mul(4) {
                    return bad(format!(
                        "group {:?}: catalog column {file:?} has {} bytes in \"files\", expected 4 x {rows} rows",
                        g.name,
                        bytes(file)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Table, group and feature names: non-empty, at most 256 bytes, no control characters.
fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return bad(format!(
            "{what} name {name:?} must be 1..={MAX_NAME_BYTES} bytes without control characters"
        ));
    }
    Ok(())
}

/// Package files must stay inside the package directory.
fn check_relative(what: &str, file: &str) -> Result<()> {
    let p = Path::new(file);
    if file.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return bad(format!(
            "{what} {file:?} must be a relative path inside the package"
        ));
    }
    Ok(())
}
