//! The model package's `spec.json` (format version 1, see `docs/package-format.md`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// The value of `format` every spec must carry.
pub const FORMAT: &str = "atrank-model-package";
/// The only spec version this runtime reads.
pub const SPEC_VERSION: u32 = 1;
/// Upper bound on any `max_history`, `max_candidates` or `max_behaviors` a spec may ask for,
/// so a corrupt spec cannot make the runtime allocate without bound.
pub const HARD_LIMIT: usize = 1 << 20;

/// A parsed and validated `spec.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`SPEC_VERSION`].
    pub spec_version: u32,
    /// A human-readable model name.
    #[serde(default)]
    pub name: String,
    /// The ONNX graph and its input/output names.
    pub graph: GraphSpec,
    /// Behavior groups (format 1: exactly one, named `item`).
    pub groups: Vec<GroupSpec>,
    /// Action vocabulary: `actions[k]` has index k+1, anything else 0.
    pub actions: Vec<String>,
    /// Time bucketing relative to the request time.
    pub time_buckets: TimeBuckets,
    /// The item side table (item id -> category).
    pub catalog: CatalogSpec,
    /// Request size limits.
    pub limits: Limits,
    /// Golden requests file, relative to the package.
    #[serde(default)]
    pub golden: Option<String>,
}

/// The graph file and the names of its inputs and output.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphSpec {
    /// ONNX file, relative to the package.
    pub file: String,
    /// ONNX opset the graph was exported with.
    pub opset: u32,
    /// Input tensor names.
    pub inputs: GraphInputs,
    /// Output tensor name (float32 `[B, N]`).
    pub output: String,
    /// What the output holds (`logit`).
    #[serde(default)]
    pub output_kind: String,
}

/// Names of the graph's inputs.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphInputs {
    /// History feature -> input name; keys `item`, `category`, `action`, `time_bucket`.
    pub history: BTreeMap<String, String>,
    /// The per-user history length input.
    pub history_length: String,
    /// Candidate feature -> input name; keys `item`, `category`.
    pub candidate: BTreeMap<String, String>,
}

/// One behavior group.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupSpec {
    /// Group name (object type).
    pub name: String,
    /// Most recent behaviors kept per request.
    pub max_history: usize,
    /// The group's id features, each with a vocabulary file.
    pub features: Vec<FeatureSpec>,
}

/// One id feature of a group.
#[derive(Debug, Clone, Deserialize)]
pub struct FeatureSpec {
    /// Feature name (`item`, `category`).
    pub name: String,
    /// Vocabulary file, relative to the package: line k has index k+1.
    pub vocab: String,
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

/// The catalog side table.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogSpec {
    /// TSV file, relative to the package: `item<TAB>category` per line.
    pub file: String,
    /// Key feature (`item`).
    pub key: String,
    /// Features the catalog supplies (`["category"]`).
    pub features: Vec<String>,
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    /// Most candidates one request may carry.
    pub max_candidates: usize,
    /// Most behaviors one request may carry (before truncation to `max_history`).
    pub max_behaviors: usize,
}

const HISTORY_KEYS: [&str; 4] = ["item", "category", "action", "time_bucket"];
const CANDIDATE_KEYS: [&str; 2] = ["item", "category"];

impl Spec {
    /// Parses and validates a spec from JSON text.
    pub fn from_json(text: &str) -> Result<Spec> {
        let spec: Spec =
            serde_json::from_str(text).map_err(|e| Error::package(format!("spec.json: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads, parses and validates `<dir>/spec.json`.
    pub fn read(dir: &Path) -> Result<Spec> {
        let path = dir.join("spec.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Spec::from_json(&text)
    }

    /// The single item group of a format-1 package.
    pub fn item_group(&self) -> &GroupSpec {
        // validate() guarantees exactly one group.
        &self.groups[0]
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::package(format!("spec.json: {m}")));
        if self.format != FORMAT {
            return bad(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.spec_version != SPEC_VERSION {
            return bad(format!(
                "spec_version {} is not supported (this runtime reads version {SPEC_VERSION})",
                self.spec_version
            ));
        }
        if self.groups.len() != 1 || self.groups[0].name != "item" {
            return bad("format 1 needs exactly one group, named \"item\"".into());
        }
        let group = &self.groups[0];
        if group.max_history == 0 || group.max_history > HARD_LIMIT {
            return bad(format!(
                "groups[0].max_history {} is out of range",
                group.max_history
            ));
        }
        for name in ["item", "category"] {
            if !group.features.iter().any(|f| f.name == name) {
                return bad(format!("groups[0] has no {name:?} feature"));
            }
        }
        for key in HISTORY_KEYS {
            if !self.graph.inputs.history.contains_key(key) {
                return bad(format!("graph.inputs.history has no {key:?}"));
            }
        }
        for key in CANDIDATE_KEYS {
            if !self.graph.inputs.candidate.contains_key(key) {
                return bad(format!("graph.inputs.candidate has no {key:?}"));
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
            return bad("time_buckets.boundaries must be ascending".into());
        }
        if self.catalog.key != "item" || self.catalog.features != ["category"] {
            return bad("catalog must map \"item\" to [\"category\"] in format 1".into());
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
        for (what, file) in [
            ("graph.file", &self.graph.file),
            ("catalog.file", &self.catalog.file),
        ]
        .into_iter()
        .chain(group.features.iter().map(|f| ("vocab", &f.vocab)))
        {
            check_relative(what, file)?;
        }
        Ok(())
    }

    /// The vocabulary file of the named feature of the item group.
    pub fn vocab_file(&self, feature: &str) -> Option<&str> {
        self.item_group()
            .features
            .iter()
            .find(|f| f.name == feature)
            .map(|f| f.vocab.as_str())
    }
}

/// Package files must stay inside the package directory.
fn check_relative(what: &str, file: &str) -> Result<()> {
    let p = Path::new(file);
    if file.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::package(format!(
            "spec.json: {what} {file:?} must be a relative path inside the package"
        )));
    }
    Ok(())
}
