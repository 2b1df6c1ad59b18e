//! Raw behaviors to graph inputs, exactly as `docs/package-format-v3.md` ("From raw behaviors
//! to the graph's inputs") states, and as the exporter's `preprocess.py` does. Pure safe Rust;
//! tested without any backend.
//!
//! Vocabularies and catalogs stay in memory-mapped files ([`crate::vocab`]): nothing is parsed
//! at load and no heap grows with their size; hashed buckets map unseen ids. Only a group of at
//! most 65,536 ids also gets its objects' feature indices in memory (`Resolved`),
//! a bounded copy that turns each object's look-ups into one hash probe.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

// Action look-ups run per behavior: a fast hasher. The keys are the spec's actions (inserted at
// load); callers' actions are only looked up.
use foldhash::HashMap;

use crate::package::{PackageDir, VerifyHashes};
use crate::spec::{CatalogSpec, Spec, TimeBuckets};
use crate::vocab::{Atv, Catalog, Column, Table, LOOKAHEAD};
use crate::{Error, Result};

/// Bucketed histories longer than this are padded to a multiple of it (16 float32 = 64 bytes:
/// see `Preprocessor::bucketed_history`). Not public: the C header generator would export it.
const HISTORY_ROW: usize = 16;

/// Groups with at most this many ids get their objects' feature indices resolved at load
/// (`Resolved`): about 60 bytes per id plus the id itself, so at most a few MB. Above it, the
/// mapped files serve every look-up (a 10^7-item catalog stays off the heap). Not public: the
/// C header generator would export it.
const RESOLVE_MAX_IDS: usize = 1 << 16;

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
    /// Other caller-supplied object features `(name, value)`; they override the catalog. A
    /// name the behavior's group does not have is an error (a typo is never ignored).
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

/// The action vocabulary: `actions[k]` -> k + 1, anything else 0.
#[derive(Debug, Clone, Default)]
struct Actions {
    index: HashMap<String, i64>,
}

impl Actions {
    /// The spec's actions (distinct: `Spec` validation refuses a repeated one).
    fn new(actions: &[String]) -> Actions {
        let index = actions
            .iter()
            .enumerate()
            .map(|(k, a)| (a.clone(), k as i64 + 1))
            .collect();
        Actions { index }
    }

    fn get(&self, action: &str) -> i64 {
        self.index.get(action).copied().unwrap_or(0)
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
    /// Rows of the batch: the requests, plus the empty rows a bucketed batch adds after them.
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

/// A group's catalog: mapped keys and columns.
#[derive(Debug, Clone)]
struct GroupCatalog {
    catalog: Catalog,
    /// The catalog's keys are the id table's vocabulary (the same file): the catalog row of an
    /// id is its index - 1, no second look-up.
    keys_are_ids: bool,
}

/// A small group's objects with their feature indices resolved at load: for each id of the
/// group's vocabulary, what [`Preprocessor::object_features`] gives it without caller features
/// (the id's index, then each feature from the catalog). One hash probe then replaces the
/// vocabulary's and the catalog's reads, which at the paper's size were about 150 ns per
/// candidate (docs/benchmarks.md). Computed by that same function, so the indices are the same
/// by construction; an id it cannot resolve (a damaged catalog value) is left out, so that the
/// request that names it fails as before.
#[derive(Clone)]
struct Resolved {
    /// Id -> its row of `features`.
    rows: HashMap<Box<str>, u32>,
    /// Features per object (the group's, the id first).
    width: usize,
    /// Row-major feature indices, `width` per object.
    features: Vec<i64>,
}

impl Resolved {
    /// The feature indices of `id`, if it is one of the resolved ids.
    fn get(&self, id: &str) -> Option<&[i64]> {
        let at = *self.rows.get(id)? as usize * self.width;
        self.features.get(at..at + self.width)
    }
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("ids", &self.rows.len())
            .field("width", &self.width)
            .finish()
    }
}

/// Everything needed to turn raw requests into [`Prepared`] inputs, loaded once per model.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: Spec,
    tables: Vec<Table>,
    /// Per group of the spec, its catalog if it has one.
    groups: Vec<Option<GroupCatalog>>,
    actions: Actions,
    /// Per group of the spec, its objects' resolved features when it has at most
    /// [`RESOLVE_MAX_IDS`] ids.
    resolved: Vec<Option<Arc<Resolved>>>,
}

impl Preprocessor {
    /// Loads vocabularies and catalogs of the package in `dir`.
    pub fn load(spec: &Spec, dir: &Path) -> Result<Preprocessor> {
        Preprocessor::load_from(spec, &PackageDir::open(dir)?)
    }

    /// Loads vocabularies and catalogs of a resolved package, each file checked against the
    /// spec's manifest before it is used; mapped files of at most 64 MiB are hashed.
    pub fn load_from(spec: &Spec, pkg: &PackageDir) -> Result<Preprocessor> {
        Preprocessor::load_with(spec, pkg, VerifyHashes::Small)
    }

    /// [`Preprocessor::load_from`], hashing the mapped files as `verify` says.
    pub fn load_with(spec: &Spec, pkg: &PackageDir, verify: VerifyHashes) -> Result<Preprocessor> {
        // Each atv file is mapped once, however many tables and catalogs name it.
        let mut atvs: BTreeMap<String, Atv> = BTreeMap::new();
        let mut open_atv = |file: &str, n: u64| -> Result<Atv> {
            if let Some(a) = atvs.get(file) {
                if a.len() as u64 != n {
                    return Err(Error::package(format!(
                        "{file}: holds {} keys, but the spec also says {n}",
                        a.len()
                    )));
                }
                return Ok(a.clone());
            }
            let digest = spec.digest(file)?;
            let map = pkg.map(file, digest, verify.hashes(digest.bytes))?;
            let mut atv = Atv::open(map, file, Some(n))?;
            if let Some(index) = spec.atv_index.get(file) {
                let digest = spec.digest(index)?;
                let map = pkg.map(index, digest, verify.hashes(digest.bytes))?;
                atv = atv.with_index(map, index)?;
            }
            atvs.insert(file.to_owned(), atv.clone());
            Ok(atv)
        };
        let mut tables = Vec::with_capacity(spec.tables.len());
        for t in &spec.tables {
            tables.push(Table {
                atv: open_atv(&t.vocab, t.size)?,
                hash_buckets: t.hash_buckets,
                seed: spec.hash_seed,
            });
        }
        let mut groups = Vec::with_capacity(spec.groups.len());
        for g in &spec.groups {
            let id_table = g.features[0].table;
            let Some(CatalogSpec {
                keys,
                rows,
                columns,
            }) = &g.catalog
            else {
                groups.push(None);
                continue;
            };
            let key_atv = open_atv(keys, *rows)?;
            let rows_usize = key_atv.len();
            let mut cols = Vec::with_capacity(columns.len());
            for (f, file) in columns {
                let digest = spec.digest(file)?;
                let map = pkg.map(file, digest, verify.hashes(digest.bytes))?;
                let table_rows = tables[g.features[*f].table].rows();
                cols.push((*f, Column::open(map, file, rows_usize, table_rows)?));
            }
            // The catalog's keys are the id vocabulary when the spec names the same file, or
            // a file whose manifest entry (SHA-256 and size) is the vocabulary's: the same
            // bytes. (A file above the hashing limit is trusted to match its entry, as every
            // mapped file is; a row past the catalog would still be refused by the columns.)
            let vocab = &spec.tables[id_table].vocab;
            let keys_are_ids = vocab == keys
                || (spec.digest(vocab)? == spec.digest(keys)?
                    && key_atv.len() == tables[id_table].atv.len());
            groups.push(Some(GroupCatalog {
                keys_are_ids,
                catalog: Catalog {
                    keys: key_atv,
                    columns: cols,
                },
            }));
        }
        Ok(Preprocessor::assemble(
            spec,
            tables,
            groups,
            RESOLVE_MAX_IDS,
        ))
    }

    /// The preprocessor of `spec` over its opened tables and catalogs, resolving the features
    /// of every group of at most `max_ids` ids.
    fn assemble(
        spec: &Spec,
        tables: Vec<Table>,
        groups: Vec<Option<GroupCatalog>>,
        max_ids: usize,
    ) -> Preprocessor {
        let mut p = Preprocessor {
            actions: Actions::new(&spec.actions),
            spec: spec.clone(),
            tables,
            groups,
            resolved: Vec::new(),
        };
        p.resolved = (0..p.spec.groups.len())
            .map(|g| p.resolve(g, max_ids).map(Arc::new))
            .collect();
        p
    }

    /// Group `g`'s objects with their features resolved ([`Resolved`]), or `None` when its id
    /// vocabulary holds more than `max_ids` ids.
    fn resolve(&self, g: usize, max_ids: usize) -> Option<Resolved> {
        let group = &self.spec.groups[g];
        let atv = &self.tables.get(group.features[0].table)?.atv;
        let n = atv.len();
        if n > max_ids {
            return None;
        }
        let width = group.features.len();
        let mut rows = HashMap::with_capacity_and_hasher(n, Default::default());
        let mut features = Vec::with_capacity(n * width);
        let mut one = vec![0i64; width];
        for k in 0..n {
            // A key that is not UTF-8 can never be asked for; one whose features fail (a
            // damaged catalog value) is left to the request-time look-up, which reports it.
            let Ok(id) = atv.key(k) else { continue };
            if self.object_features(g, id, None, &mut one).is_err() {
                continue;
            }
            let row = u32::try_from(features.len() / width).ok()?;
            rows.insert(Box::from(id), row);
            features.extend_from_slice(&one);
        }
        Some(Resolved {
            rows,
            width,
            features,
        })
    }

    /// `longest` rounded up to its bucket (with `bucket`): the next power of two, never above
    /// `cap` unless `longest` already is.
    fn bucketed(bucket: bool, longest: usize, cap: usize) -> usize {
        if bucket {
            longest
                .checked_next_power_of_two()
                .unwrap_or(longest)
                .min(cap.max(longest))
        } else {
            longest
        }
    }

    /// A history length rounded up to its bucket (with `bucket`): as [`Self::bucketed`], then,
    /// above [`HISTORY_ROW`], up to a multiple of it. Only the cap (a `max_history` such as 50)
    /// is not a power of two already; 50 becomes 64. tract's softmax runs one row of keys at a
    /// time, and a row of a multiple of 16 floats starts on a 64-byte boundary, where its SIMD
    /// kernels run in place instead of through a scratch copy of each row's unaligned ends:
    /// tract at the paper's size (hidden 128, 8 heads, 50 behaviors) ran 1.28x faster at
    /// N = 100 and 1.33x at N = 1000 (docs/benchmarks.md). The padded keys are masked.
    fn bucketed_history(bucket: bool, longest: usize, cap: usize) -> usize {
        let l = Preprocessor::bucketed(bucket, longest, cap);
        if bucket && l > HISTORY_ROW {
            l.next_multiple_of(HISTORY_ROW)
        } else {
            l
        }
    }

    /// The number of ids in table `i` of the spec (`spec.tables[i]`), 0 if there is none.
    pub fn table_len(&self, i: usize) -> usize {
        self.tables.get(i).map_or(0, |t| t.atv.len())
    }

    /// The rows the embedding of table `i` needs: ids + 1 (unknown and padding) + hashed
    /// buckets; 0 if there is no table `i`. The largest index the preprocessing can produce
    /// for the table is one less.
    pub fn table_rows(&self, i: usize) -> u64 {
        self.tables.get(i).map_or(0, Table::rows)
    }

    /// Checks one request of a batch as [`Preprocessor::prepare`] would (limits, groups,
    /// feature names), without building tensors.
    pub fn validate(&self, request: &Request<'_>) -> Result<()> {
        self.check(request)?;
        self.recent(request.behaviors).map(|_| ())
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
            let known = &self.spec.groups[g].features[1..];
            if let Some((name, _)) = b
                .features
                .iter()
                .find(|(name, _)| !known.iter().any(|f| f.name == *name))
            {
                let names: Vec<&str> = known.iter().map(|f| f.name.as_str()).collect();
                return Err(Error::invalid(format!(
                    "behaviors[{k}].features: {name:?} is not a feature of group {:?} ({names:?})",
                    self.spec.groups[g].name
                )));
            }
            per_group[g].push(b);
        }
        for (g, list) in per_group.iter_mut().enumerate() {
            list.sort_by_key(|b| b.timestamp);
            let skip = list.len().saturating_sub(self.spec.groups[g].max_history);
            list.drain(..skip);
        }
        Ok(per_group)
    }

    /// Writes the feature indices of object `id` of group `g` into `out` (one per feature):
    /// the id's index, then each feature from `caller` if it has it, else from the catalog.
    /// A damaged vocabulary or catalog met on the way is an `InvalidPackage` error.
    fn object_features(
        &self,
        g: usize,
        id: &str,
        caller: Option<&Behavior<'_>>,
        out: &mut [i64],
    ) -> Result<()> {
        let index = self.tables[self.spec.groups[g].features[0].table].index(id)?;
        self.object_features_at(g, id, index, None, caller, out)
    }

    /// [`Preprocessor::object_features`] with the id's index already looked up, and with the
    /// object's catalog row when the caller already has it (`row`; `None`: looked up here if
    /// a feature needs it).
    fn object_features_at(
        &self,
        g: usize,
        id: &str,
        index: i64,
        mut row: Option<Option<usize>>,
        caller: Option<&Behavior<'_>>,
        out: &mut [i64],
    ) -> Result<()> {
        let group = &self.spec.groups[g];
        out[0] = index;
        for (f, feature) in group.features.iter().enumerate().skip(1) {
            out[f] = match caller.and_then(|b| b.feature(&feature.name)) {
                Some(v) => self.tables[feature.table].index(v)?,
                None => {
                    let Some(c) = &self.groups[g] else {
                        // No catalog: a feature the caller does not give is missing (0).
                        out[f] = 0;
                        continue;
                    };
                    let r = match row {
                        Some(r) => r,
                        None => *row.insert(self.catalog_row(g, c, id, index)?),
                    };
                    match r {
                        Some(r) => c.catalog.value(r, f)?,
                        None => 0,
                    }
                }
            };
        }
        Ok(())
    }

    /// The row of object `id` (id index `index`) in group `g`'s catalog `c`.
    fn catalog_row(
        &self,
        g: usize,
        c: &GroupCatalog,
        id: &str,
        index: i64,
    ) -> Result<Option<usize>> {
        if c.keys_are_ids {
            // Ids 1..=n are keys; 0 and hashed buckets are not.
            let n = self.tables[self.spec.groups[g].features[0].table].atv.len();
            Ok(usize::try_from(index)
                .ok()
                .filter(|&i| i >= 1 && i <= n)
                .map(|i| i - 1))
        } else {
            c.catalog.row(id)
        }
    }

    /// The catalog rows of a chunk of group `g`'s objects (`ids`, with their id indices
    /// `index`) into `rows`, left empty when the group has no catalog. A catalog with its own
    /// keys is searched through [`crate::vocab::Atv::get_many`], so that the look-ups' cache
    /// misses overlap. Then the cache lines of the rows' catalog values are read, so that
    /// reading them next hits the cache; see [`crate::vocab::touch`].
    fn catalog_rows(
        &self,
        g: usize,
        ids: &[&str],
        index: &[i64],
        rows: &mut Vec<Option<usize>>,
    ) -> Result<()> {
        rows.clear();
        let Some(c) = &self.groups[g] else {
            return Ok(());
        };
        if c.keys_are_ids {
            for (id, &i) in ids.iter().zip(index) {
                rows.push(self.catalog_row(g, c, id, i)?);
            }
        } else {
            c.catalog.keys.get_many(ids, rows)?;
        }
        let mut sum = 0u8;
        for &r in rows.iter().flatten() {
            for (_, column) in &c.catalog.columns {
                sum ^= column.touch(r);
            }
        }
        std::hint::black_box(sum);
        Ok(())
    }

    /// Turns B requests into one padded batch: every group's behaviors padded to the longest
    /// history, candidates padded (with the unknown object, index 0) to the most candidates.
    /// Padded candidate positions score something meaningless; callers drop them.
    pub fn prepare(&self, requests: &[Request<'_>]) -> Result<Prepared> {
        self.prepare_padded(requests, false)
    }

    /// Like [`Preprocessor::prepare`], but pads further, to bucketed shapes: each group's
    /// histories and the candidate lists to the next power of two (at most the group's
    /// `max_history`, the package's `max_candidates`, unless the batch already holds more;
    /// a history above 16 then to a multiple of 16).
    /// Batches of similar sizes then share a few tensor shapes, for backends that specialise a
    /// plan per input shape (tract). The graph masks padded behaviors by the lengths and scores
    /// each candidate on its own, so the real candidates' scores do not change (up to float
    /// rounding); [`Prepared::candidates`] counts the extra candidate positions too. The batch
    /// also gets empty rows up to a power of two ([`Prepared::users`] counts them).
    pub fn prepare_bucketed(&self, requests: &[Request<'_>]) -> Result<Prepared> {
        self.prepare_padded(requests, true)
    }

    fn prepare_padded(&self, requests: &[Request<'_>], bucket: bool) -> Result<Prepared> {
        if requests.is_empty() {
            return Err(Error::invalid("no requests to prepare"));
        }
        let n = requests
            .iter()
            .map(|r| r.candidates.len())
            .max()
            .unwrap_or(0);
        let n = Preprocessor::bucketed(bucket, n, self.spec.limits.max_candidates);
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
            kept.push(self.recent(r.behaviors).map_err(at)?);
        }
        // Bucketed batches also get empty rows (no behaviors, unknown candidates) up to a power
        // of two, so that batch sizes share shapes too; callers read only the first `b` rows.
        let rows = if bucket { b.next_power_of_two() } else { b };
        let mut tensors = Vec::new();
        for (g, group) in self.spec.groups.iter().enumerate() {
            let l = kept.iter().map(|k| k[g].len()).max().unwrap_or(0).max(1);
            let l = Preprocessor::bucketed_history(bucket, l, group.max_history.max(1));
            let mut feats = vec![vec![0i64; rows * l]; group.features.len()];
            let mut action = vec![0i64; rows * l];
            let mut time = vec![0i64; rows * l];
            let mut len = Vec::with_capacity(rows);
            let mut one = vec![0i64; group.features.len()];
            let resolved = self.resolved[g].as_deref();
            for (u, (r, k)) in requests.iter().zip(&kept).enumerate() {
                for (j, beh) in k[g].iter().enumerate() {
                    let at = u * l + j;
                    // The resolved features hold for a behavior whose caller gives none.
                    let known = if beh.category.is_none() && beh.features.is_empty() {
                        resolved.and_then(|res| res.get(beh.id))
                    } else {
                        None
                    };
                    let row = match known {
                        Some(row) => row,
                        None => {
                            self.object_features(g, beh.id, Some(beh), &mut one)?;
                            &one
                        }
                    };
                    for (col, v) in feats.iter_mut().zip(row) {
                        col[at] = *v;
                    }
                    action[at] = beh.action.map_or(0, |a| self.actions.get(a));
                    time[at] = time_bucket(&self.spec.time_buckets, r.request_time, beh.timestamp);
                }
                len.push(k[g].len() as i64);
            }
            len.resize(rows, 0);
            for (feature, data) in group.features.iter().zip(feats) {
                tensors.push(Tensor {
                    name: feature.input.clone(),
                    shape: vec![rows, l],
                    data,
                });
            }
            tensors.push(Tensor {
                name: group.action_input.clone(),
                shape: vec![rows, l],
                data: action,
            });
            tensors.push(Tensor {
                name: group.time_input.clone(),
                shape: vec![rows, l],
                data: time,
            });
            tensors.push(Tensor {
                name: group.length_input.clone(),
                shape: vec![rows],
                data: len,
            });
        }
        let t = self.spec.target;
        let width = self.spec.groups[t].features.len();
        let mut columns = vec![Vec::with_capacity(rows * n); self.spec.candidate_inputs.len()];
        let mut one = vec![0i64; width];
        let id_table = &self.tables[self.spec.groups[t].features[0].table];
        let mut index = Vec::with_capacity(LOOKAHEAD);
        let mut catalog_rows = Vec::with_capacity(LOOKAHEAD);
        let resolved = self.resolved[t].as_deref();
        for r in requests {
            if let Some(res) = resolved {
                // A small group: one hash probe per candidate; an id outside the vocabulary
                // (hashed or unknown) takes the full look-up.
                for c in r.candidates {
                    let row = match res.get(c) {
                        Some(row) => row,
                        None => {
                            self.object_features(t, c, None, &mut one)?;
                            &one
                        }
                    };
                    for (col, (f, _)) in columns.iter_mut().zip(&self.spec.candidate_inputs) {
                        col.push(row[*f]);
                    }
                }
            } else {
                // Chunks of candidates: their vocabulary and catalog reads are issued together,
                // so that the cache misses of a big catalog overlap (Atv::get_many).
                for chunk in r.candidates.chunks(LOOKAHEAD) {
                    index.clear();
                    id_table.index_many(chunk, &mut index)?;
                    self.catalog_rows(t, chunk, &index, &mut catalog_rows)?;
                    for (k, (c, &i)) in chunk.iter().zip(&index).enumerate() {
                        let row = catalog_rows.get(k).copied();
                        self.object_features_at(t, c, i, row, None, &mut one)?;
                        for (col, (f, _)) in columns.iter_mut().zip(&self.spec.candidate_inputs) {
                            col.push(one[*f]);
                        }
                    }
                }
            }
            for col in columns.iter_mut() {
                col.resize(col.len() + (n - r.candidates.len()), 0);
            }
        }
        for col in columns.iter_mut() {
            col.resize(rows * n, 0);
        }
        for (data, (_, input)) in columns.into_iter().zip(&self.spec.candidate_inputs) {
            tensors.push(Tensor {
                name: input.clone(),
                shape: vec![rows, n],
                data,
            });
        }
        Ok(Prepared {
            users: rows,
            candidates: n,
            tensors,
        })
    }
}

/// Prefixes an invalid-argument message with `p` (e.g. `requests[2]: `); other errors pass.
pub(crate) fn prefix(e: Error, p: &str) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{p}{m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_v3;
