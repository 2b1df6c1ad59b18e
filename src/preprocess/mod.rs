//! Raw behaviors to graph inputs, exactly as `docs/package-format.md` states (and as the
//! exporter's `preprocess.py` does). Pure safe Rust; tested without any backend.

use std::collections::HashMap;
use std::path::Path;

use crate::spec::{Spec, TimeBuckets};
use crate::{Error, Result};

/// One raw behavior of a user: what they did (`action`) to which object (`item`) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behavior<'a> {
    /// Raw item id, as in the training logs.
    pub item: &'a str,
    /// Raw category; `None` lets the package's catalog supply it.
    pub category: Option<&'a str>,
    /// Raw action name (`None` or one the model never saw maps to "unknown").
    pub action: Option<&'a str>,
    /// Unix time of the behavior, in seconds.
    pub timestamp: i64,
}

/// One user's scoring request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The user's behaviors, in any order (equal timestamps keep this order).
    pub behaviors: &'a [Behavior<'a>],
    /// Raw ids of the items to score.
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

/// Maps a behavior's age to its time bucket.
pub fn time_bucket(tb: &TimeBuckets, request_time: i64, timestamp: i64) -> i64 {
    let unit = tb.unit_seconds;
    let d = request_time
        .div_euclid(unit)
        .saturating_sub(timestamp.div_euclid(unit))
        .saturating_add(tb.offset);
    tb.boundaries.iter().filter(|&&b| b <= d).count() as i64
}

/// Graph inputs for B users, flattened row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Users.
    pub users: usize,
    /// Padded history length (at least 1).
    pub history_len: usize,
    /// Candidates per user.
    pub candidates: usize,
    /// `[B, L]` item indices.
    pub hist_item: Vec<i64>,
    /// `[B, L]` category indices.
    pub hist_category: Vec<i64>,
    /// `[B, L]` action indices.
    pub hist_action: Vec<i64>,
    /// `[B, L]` time buckets.
    pub hist_time: Vec<i64>,
    /// `[B]` real history lengths.
    pub hist_len: Vec<i64>,
    /// `[B, N]` candidate item indices.
    pub cand_item: Vec<i64>,
    /// `[B, N]` candidate category indices.
    pub cand_category: Vec<i64>,
}

/// Everything needed to turn raw requests into [`Prepared`] inputs, loaded once per model.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    items: Vocab,
    categories: Vocab,
    actions: Vocab,
    /// Raw item id -> category index.
    catalog: HashMap<String, i64>,
    time_buckets: TimeBuckets,
    max_history: usize,
    max_candidates: usize,
    max_behaviors: usize,
}

impl Preprocessor {
    /// Loads vocabularies and the catalog of the package in `dir`.
    pub fn load(spec: &Spec, dir: &Path) -> Result<Preprocessor> {
        let vocab = |feature: &str| -> Result<Vocab> {
            let file = spec
                .vocab_file(feature)
                .ok_or_else(|| Error::package(format!("no vocabulary for {feature:?}")))?;
            Vocab::read(&dir.join(file))
        };
        let items = vocab("item")?;
        let categories = vocab("category")?;
        let actions = Vocab::from_ids(spec.actions.iter().cloned())?;
        let path = dir.join(&spec.catalog.file);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let catalog = parse_catalog(&text, &categories)
            .map_err(|e| Error::package(format!("{}: {e}", path.display())))?;
        Ok(Preprocessor {
            items,
            categories,
            actions,
            catalog,
            time_buckets: spec.time_buckets.clone(),
            max_history: spec.item_group().max_history,
            max_candidates: spec.limits.max_candidates,
            max_behaviors: spec.limits.max_behaviors,
        })
    }

    /// The most candidates one request may carry.
    pub fn max_candidates(&self) -> usize {
        self.max_candidates
    }

    /// Checks a request against the package's limits; names the offending field.
    pub fn check(&self, request: &Request<'_>) -> Result<()> {
        if request.candidates.is_empty() {
            return Err(Error::invalid("candidates is empty: nothing to score"));
        }
        if request.candidates.len() > self.max_candidates {
            return Err(Error::invalid(format!(
                "{} candidates exceed this model's limit of {}",
                request.candidates.len(),
                self.max_candidates
            )));
        }
        if request.behaviors.len() > self.max_behaviors {
            return Err(Error::invalid(format!(
                "{} behaviors exceed this model's limit of {}",
                request.behaviors.len(),
                self.max_behaviors
            )));
        }
        Ok(())
    }

    /// Turns B requests into one padded batch. All requests must have the same number of
    /// candidates.
    pub fn prepare(&self, requests: &[Request<'_>]) -> Result<Prepared> {
        let Some(first) = requests.first() else {
            return Err(Error::invalid("no requests to prepare"));
        };
        let n = first.candidates.len();
        let mut kept: Vec<Vec<&Behavior<'_>>> = Vec::with_capacity(requests.len());
        for (u, r) in requests.iter().enumerate() {
            self.check(r)?;
            if r.candidates.len() != n {
                return Err(Error::invalid(format!(
                    "requests[{u}] has {} candidates, requests[0] has {n}",
                    r.candidates.len()
                )));
            }
            kept.push(self.recent(r.behaviors));
        }
        let l = kept.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let b = requests.len();
        let mut p = Prepared {
            users: b,
            history_len: l,
            candidates: n,
            hist_item: vec![0; b * l],
            hist_category: vec![0; b * l],
            hist_action: vec![0; b * l],
            hist_time: vec![0; b * l],
            hist_len: Vec::with_capacity(b),
            cand_item: Vec::with_capacity(b * n),
            cand_category: Vec::with_capacity(b * n),
        };
        for (u, (r, hist)) in requests.iter().zip(&kept).enumerate() {
            for (j, beh) in hist.iter().enumerate() {
                let at = u * l + j;
                p.hist_item[at] = self.items.get(beh.item);
                p.hist_category[at] = match beh.category {
                    Some(c) => self.categories.get(c),
                    None => self.catalog_category(beh.item),
                };
                p.hist_action[at] = beh.action.map_or(0, |a| self.actions.get(a));
                p.hist_time[at] = time_bucket(&self.time_buckets, r.request_time, beh.timestamp);
            }
            p.hist_len.push(hist.len() as i64);
            for c in r.candidates {
                p.cand_item.push(self.items.get(c));
                p.cand_category.push(self.catalog_category(c));
            }
        }
        Ok(p)
    }

    /// Stable sort by timestamp, keep the most recent `max_history`.
    fn recent<'b, 'a>(&self, behaviors: &'b [Behavior<'a>]) -> Vec<&'b Behavior<'a>> {
        let mut sorted: Vec<&Behavior<'a>> = behaviors.iter().collect();
        sorted.sort_by_key(|b| b.timestamp);
        let skip = sorted.len().saturating_sub(self.max_history);
        sorted.split_off(skip)
    }

    fn catalog_category(&self, item: &str) -> i64 {
        self.catalog.get(item).copied().unwrap_or(0)
    }
}

fn parse_catalog(text: &str, categories: &Vocab) -> Result<HashMap<String, i64>> {
    let mut catalog = HashMap::new();
    for (lineno, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some((item, category)) = line.split_once('\t') else {
            return Err(Error::package(format!(
                "line {}: expected item<TAB>category",
                lineno + 1
            )));
        };
        catalog.insert(item.to_owned(), categories.get(category));
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests;
