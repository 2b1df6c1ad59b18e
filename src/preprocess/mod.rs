//! Raw behaviors to graph inputs, exactly as `docs/package-format.md` states (and as the
//! exporter's `preprocess.py` does). Pure safe Rust; tested without any backend.

use std::collections::HashMap;
use std::path::Path;

use crate::spec::{Spec, TimeBuckets};
use crate::{Error, Result};

/// One raw behavior of a user: what they did (`action`) to which object (`id`, of `group`)
/// and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Behavior<'a> {
    /// The behavior group (object type); `None` means the model's target group (`item`).
    pub group: Option<&'a str>,
    /// Raw object id, as in the training logs.
    pub id: &'a str,
    /// Shorthand for the `category` feature; `None` lets the catalog supply it.
    pub category: Option<&'a str>,
    /// Other caller-supplied object features `(name, value)`; they override the catalog.
    pub features: &'a [(&'a str, &'a str)],
    /// Raw action name (`None` or one the model never saw maps to "unknown").
    pub action: Option<&'a str>,
    /// Unix time of the behavior, in seconds.
    pub timestamp: i64,
}

impl<'a> Behavior<'a> {
    /// A behavior on the target group (`item` in single-group models).
    pub fn item(
        id: &'a str,
        category: Option<&'a str>,
        action: Option<&'a str>,
        timestamp: i64,
    ) -> Self {
        Behavior {
            group: None,
            id,
            category,
            features: &[],
            action,
            timestamp,
        }
    }

    fn feature(&self, name: &str) -> Option<&'a str> {
        if name == "category" {
            if let Some(c) = self.category {
                return Some(c);
            }
        }
        self.features
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

/// One user's scoring request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The user's behaviors, of any groups, in any order (equal timestamps keep this order).
    pub behaviors: &'a [Behavior<'a>],
    /// Raw ids of the target-group objects to score.
    pub candidates: &'a [&'a str],
    /// Unix time of the request, in seconds: behavior ages are measured from it.
    pub request_time: i64,
}

/// A vocabulary: raw id -> index (k+1 for line k; 0 = unknown).
#[derive(Debug, Clone, Default)]
pub struct Vocab {
    index: HashMap<String, i64>,
}

impl Vocab {
    /// Builds a vocabulary from its ids in order.
    pub fn from_ids<I: IntoIterator<Item = String>>(ids: I) -> Result<Vocab> {
        let mut index = HashMap::new();
        for (k, id) in ids.into_iter().enumerate() {
            let value = i64::try_from(k + 1).map_err(|_| Error::package("vocabulary too large"))?;
            if index.insert(id.clone(), value).is_some() {
                return Err(Error::package(format!(
                    "duplicate id {id:?} in a vocabulary"
                )));
            }
        }
        Ok(Vocab { index })
    }

    /// Reads a vocabulary file: one id per line.
    pub fn read(path: &Path) -> Result<Vocab> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Vocab::from_ids(text.lines().map(str::to_owned))
            .map_err(|e| Error::package(format!("{}: {e}", path.display())))
    }

    /// The index of `id`, 0 when unknown.
    pub fn get(&self, id: &str) -> i64 {
        self.index.get(id).copied().unwrap_or(0)
    }

    /// Number of known ids.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Maps a behavior's age to its time bucket; a behavior after the request time gets 0.
pub fn time_bucket(tb: &TimeBuckets, request_time: i64, timestamp: i64) -> i64 {
    if timestamp > request_time {
        return 0;
    }
    let unit = tb.unit_seconds;
    let d = request_time
        .div_euclid(unit)
        .saturating_sub(timestamp.div_euclid(unit))
        .saturating_add(tb.offset);
    tb.boundaries.iter().filter(|&&b| b <= d).count() as i64
}

/// One int64 graph input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Graph input name.
    pub name: String,
    /// Shape (`[B, L]`, `[B]` or `[B, N]`).
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<i64>,
}

/// Graph inputs for B users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Users.
    pub users: usize,
    /// Candidates per user.
    pub candidates: usize,
    /// Every graph input, in the spec's group order.
    pub tensors: Vec<Tensor>,
}

impl Prepared {
    /// The tensor feeding the graph input `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A group's loaded tables: its features' vocabularies (by table index) and catalog.
#[derive(Debug, Clone)]
struct GroupTables {
    /// Object id -> feature indices (position k = feature k; position 0 unused).
    catalog: HashMap<String, Vec<i64>>,
}

/// Everything needed to turn raw requests into [`Prepared`] inputs, loaded once per model.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: Spec,
    tables: Vec<Vocab>,
    groups: Vec<GroupTables>,
    actions: Vocab,
}

impl Preprocessor {
    /// Loads vocabularies and catalogs of the package in `dir`.
    pub fn load(spec: &Spec, dir: &Path) -> Result<Preprocessor> {
        let tables = spec
            .tables
            .iter()
            .map(|t| Vocab::read(&dir.join(&t.vocab)))
            .collect::<Result<Vec<_>>>()?;
        let mut groups = Vec::with_capacity(spec.groups.len());
        for g in &spec.groups {
            let catalog = match &g.catalog {
                Some(c) => {
                    let path = dir.join(&c.file);
                    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                    parse_catalog(&text, c.has_header, g, &tables)
                        .map_err(|e| Error::package(format!("{}: {e}", path.display())))?
                }
                None => HashMap::new(),
            };
            groups.push(GroupTables { catalog });
        }
        let actions = Vocab::from_ids(spec.actions.iter().cloned())?;
        Ok(Preprocessor {
            spec: spec.clone(),
            tables,
            groups,
            actions,
        })
    }

    /// The most candidates one request may carry.
    pub fn max_candidates(&self) -> usize {
        self.spec.limits.max_candidates
    }

    /// Checks a request against the package's limits; names the offending field.
    pub fn check(&self, request: &Request<'_>) -> Result<()> {
        let limits = &self.spec.limits;
        if request.candidates.is_empty() {
            return Err(Error::invalid("candidates is empty: nothing to score"));
        }
        if request.candidates.len() > limits.max_candidates {
            return Err(Error::invalid(format!(
                "{} candidates exceed this model's limit of {}",
                request.candidates.len(),
                limits.max_candidates
            )));
        }
        if request.behaviors.len() > limits.max_behaviors {
            return Err(Error::invalid(format!(
                "{} behaviors exceed this model's limit of {}",
                request.behaviors.len(),
                limits.max_behaviors
            )));
        }
        Ok(())
    }

    /// Routes behaviors to groups, then per group: stable sort by timestamp, keep the most
    /// recent `max_history`.
    fn recent<'b, 'a>(&self, behaviors: &'b [Behavior<'a>]) -> Result<Vec<Vec<&'b Behavior<'a>>>> {
        let mut per_group: Vec<Vec<&Behavior<'a>>> = vec![Vec::new(); self.spec.groups.len()];
        for (k, b) in behaviors.iter().enumerate() {
            let g = match b.group {
                None => self.spec.target,
                Some(name) => self.spec.group_index(name).ok_or_else(|| {
                    let names: Vec<&str> =
                        self.spec.groups.iter().map(|g| g.name.as_str()).collect();
                    Error::invalid(format!(
                        "behaviors[{k}].group {name:?} is not a group of this model ({names:?})"
                    ))
                })?,
            };
            per_group[g].push(b);
        }
        for (g, list) in per_group.iter_mut().enumerate() {
            list.sort_by_key(|b| b.timestamp);
            let skip = list.len().saturating_sub(self.spec.groups[g].max_history);
            list.drain(..skip);
        }
        Ok(per_group)
    }

    fn feature_index(&self, g: usize, f: usize, b: &Behavior<'_>) -> i64 {
        let group = &self.spec.groups[g];
        let feature = &group.features[f];
        let vocab = &self.tables[feature.table];
        if f == 0 {
            return vocab.get(b.id);
        }
        match b.feature(&feature.name) {
            Some(v) => vocab.get(v),
            None => self.catalog_feature(g, b.id, f),
        }
    }

    fn catalog_feature(&self, g: usize, id: &str, f: usize) -> i64 {
        self.groups[g]
            .catalog
            .get(id)
            .and_then(|row| row.get(f))
            .copied()
            .unwrap_or(0)
    }

    /// Turns B requests into one padded batch. All requests must have the same number of
    /// candidates.
    pub fn prepare(&self, requests: &[Request<'_>]) -> Result<Prepared> {
        let Some(first) = requests.first() else {
            return Err(Error::invalid("no requests to prepare"));
        };
        let n = first.candidates.len();
        let b = requests.len();
        let mut kept = Vec::with_capacity(b);
        for (u, r) in requests.iter().enumerate() {
            let at = |e: Error| {
                if b > 1 {
                    prefix(e, &format!("requests[{u}]: "))
                } else {
                    e
                }
            };
            self.check(r).map_err(at)?;
            if r.candidates.len() != n {
                return Err(Error::invalid(format!(
                    "requests[{u}] has {} candidates, requests[0] has {n}",
                    r.candidates.len()
                )));
            }
            kept.push(self.recent(r.behaviors).map_err(at)?);
        }
        let mut tensors = Vec::new();
        for (g, group) in self.spec.groups.iter().enumerate() {
            let l = kept.iter().map(|k| k[g].len()).max().unwrap_or(0).max(1);
            let mut feats = vec![vec![0i64; b * l]; group.features.len()];
            let mut action = vec![0i64; b * l];
            let mut time = vec![0i64; b * l];
            let mut len = Vec::with_capacity(b);
            for (u, (r, k)) in requests.iter().zip(&kept).enumerate() {
                for (j, beh) in k[g].iter().enumerate() {
                    let at = u * l + j;
                    for (f, col) in feats.iter_mut().enumerate() {
                        col[at] = self.feature_index(g, f, beh);
                    }
                    action[at] = beh.action.map_or(0, |a| self.actions.get(a));
                    time[at] = time_bucket(&self.spec.time_buckets, r.request_time, beh.timestamp);
                }
                len.push(k[g].len() as i64);
            }
            for (feature, data) in group.features.iter().zip(feats) {
                tensors.push(Tensor {
                    name: feature.input.clone(),
                    shape: vec![b, l],
                    data,
                });
            }
            tensors.push(Tensor {
                name: group.action_input.clone(),
                shape: vec![b, l],
                data: action,
            });
            tensors.push(Tensor {
                name: group.time_input.clone(),
                shape: vec![b, l],
                data: time,
            });
            tensors.push(Tensor {
                name: group.length_input.clone(),
                shape: vec![b],
                data: len,
            });
        }
        let t = self.spec.target;
        for (f, input) in &self.spec.candidate_inputs {
            let mut data = Vec::with_capacity(b * n);
            for r in requests {
                for c in r.candidates {
                    data.push(if *f == 0 {
                        self.tables[self.spec.groups[t].features[0].table].get(c)
                    } else {
                        self.catalog_feature(t, c, *f)
                    });
                }
            }
            tensors.push(Tensor {
                name: input.clone(),
                shape: vec![b, n],
                data,
            });
        }
        Ok(Prepared {
            users: b,
            candidates: n,
            tensors,
        })
    }
}

fn prefix(e: Error, p: &str) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{p}{m}")),
        other => other,
    }
}

/// Reads a catalog: version 1 has no header (`item<TAB>category`), version 2 a header row of
/// column names (`id<TAB>feature...`). Empty cells mean "no value" (index 0).
fn parse_catalog(
    text: &str,
    has_header: bool,
    group: &crate::spec::GroupSpec,
    tables: &[Vocab],
) -> Result<HashMap<String, Vec<i64>>> {
    let mut lines = text.lines().enumerate();
    // Column k -> feature index.
    let columns: Vec<Option<usize>> = if has_header {
        let Some((_, header)) = lines.next() else {
            return Ok(HashMap::new());
        };
        let cols: Vec<&str> = header.split('\t').collect();
        if cols.first() != Some(&"id") {
            return Err(Error::package("line 1: the header must start with \"id\""));
        }
        cols.iter()
            .map(|c| group.features.iter().position(|f| f.name == *c))
            .collect()
    } else {
        vec![
            Some(0),
            group.features.iter().position(|f| f.name == "category"),
        ]
    };
    let mut catalog = HashMap::new();
    for (lineno, line) in lines {
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() != columns.len() {
            return Err(Error::package(format!(
                "line {}: {} columns, expected {}",
                lineno + 1,
                cells.len(),
                columns.len()
            )));
        }
        let mut row = vec![0i64; group.features.len()];
        for (cell, col) in cells.iter().zip(&columns).skip(1) {
            if let Some(f) = col {
                if !cell.is_empty() {
                    row[*f] = tables[group.features[*f].table].get(cell);
                }
            }
        }
        catalog.insert(cells[0].to_owned(), row);
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests;
