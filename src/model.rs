//! [`Model`]: a loaded package (spec + preprocessing tables + graphs on a backend), and its
//! bounded user-encoding cache.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use crate::backend::onnx_check::{self, Expect, InputType};
use crate::backend::{
    self, Backend, ExternalFile, Feed, Fetched, Graph, LoadOptions, PlanStats, Serving,
};
use crate::metrics::{Entry, Metrics, ModelInfo, ModelStats};
use crate::package::{PackageDir, VerifyHashes, MAX_GRAPH_BYTES};
use crate::preprocess::{Prepared, Preprocessor, Request};
use crate::spec::{Precision, Spec, SplitSpec};
use crate::{Error, Result};

/// The split pair of graphs and the cache of user encodings they make possible.
struct Split {
    spec: SplitSpec,
    encoder: Box<dyn Graph>,
    scorer: Box<dyn Graph>,
    cache: Mutex<EncodingCache>,
}

/// One user's encoded behaviors (the encoder's outputs for one request).
#[derive(Debug)]
struct Encoding {
    encoded: Fetched,
    mask: Fetched,
}

impl Encoding {
    /// Bytes this entry holds, its key included (plus a fixed allowance for the map's own
    /// bookkeeping per entry).
    fn bytes(&self, key: &(String, u64)) -> usize {
        const ENTRY_OVERHEAD: usize = 128;
        (self.encoded.data.len() + self.mask.data.len()) * std::mem::size_of::<f32>()
            + (self.encoded.shape.len() + self.mask.shape.len()) * std::mem::size_of::<usize>()
            + key.0.len()
            + ENTRY_OVERHEAD
    }
}

/// A least-recently-used map from (user key, history fingerprint) to encodings, bounded both
/// in entries and in bytes (`lru::LruCache`: O(1) look-up, promotion and eviction; unbounded
/// in the crate's sense, so nothing is preallocated for the capacity).
struct EncodingCache {
    map: LruCache<(String, u64), Arc<Encoding>>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl EncodingCache {
    fn new(capacity: NonZeroUsize, max_bytes: usize) -> Self {
        EncodingCache {
            map: LruCache::unbounded(),
            capacity: capacity.get(),
            max_bytes,
            bytes: 0,
            hits: 0,
            misses: 0,
        }
    }

    fn get(&mut self, key: &(String, u64)) -> Option<Arc<Encoding>> {
        let found = self.map.get(key).cloned();
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    fn insert(&mut self, key: (String, u64), value: Arc<Encoding>) {
        let size = value.bytes(&key);
        if size > self.max_bytes {
            return; // larger than the whole budget: not cached
        }
        if let Some(old) = self.map.put(key.clone(), value) {
            self.bytes -= old.bytes(&key);
        }
        self.bytes += size;
        while self.map.len() > self.capacity || self.bytes > self.max_bytes {
            match self.map.pop_lru() {
                Some((k, v)) => self.bytes -= v.bytes(&k),
                None => break,
            }
        }
    }
}

/// Counters of a model's user-encoding cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Requests served from a cached encoding.
    pub hits: u64,
    /// Requests that had to run the encoder.
    pub misses: u64,
    /// Encodings held now.
    pub entries: usize,
    /// The most encodings held.
    pub capacity: usize,
    /// Bytes the encodings held now take (with their keys).
    pub bytes: usize,
    /// The most bytes the cache holds.
    pub max_bytes: usize,
}

/// The most bytes a user key of [`Model::score_cached`] may have.
pub const MAX_USER_KEY_BYTES: usize = 4096;

/// A loaded model package. Immutable once loaded (apart from its encoding cache, which has its
/// own lock); `Send + Sync`, so one `Model` (e.g. in an `Arc`) serves any number of threads.
pub struct Model {
    spec: Spec,
    dir: PathBuf,
    backend: Backend,
    serving: Serving,
    fallback_reason: Option<String>,
    preprocessor: Preprocessor,
    /// Pad inputs to bucketed shapes (tract with shape-specialised plans: requests of similar
    /// sizes then share those plans).
    bucket: bool,
    graph: Box<dyn Graph>,
    split: Option<Split>,
    /// SHA-256 of the graph file, hex (computed at load).
    graph_sha256: String,
    metrics: Metrics,
    /// [`LoadOptions::exclude_seen`].
    exclude_seen: bool,
    /// [`LoadOptions::batch_rows`] (0: no limit).
    batch_rows: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dir", &self.dir)
            .field("backend", &self.backend)
            .field("serving", &self.serving)
            .finish()
    }
}

impl Model {
    /// Loads the package in `dir` and prepares its graph on `backend` with default options
    /// (1 intra-op thread, CPU only).
    pub fn load(dir: impl AsRef<Path>, backend: Backend) -> Result<Model> {
        Model::load_with(dir, &LoadOptions::new(backend))
    }

    /// Loads the package in `dir` as `options` say (backend, threads, GPU policy, ONNX Runtime
    /// library, cache size). A package with the split pair of graphs also loads them.
    pub fn load_with(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let dir = dir.as_ref();
        backend::check_options(options)?;
        let pkg = PackageDir::open(dir)?;
        let spec = Spec::read_from(&pkg)?;
        if spec.precision == Precision::Int8 && options.backend == Backend::Tract {
            return Err(Error::BackendUnavailable(format!(
                "{}: the package's graphs are int8 (graph.precision), which atrank serves on \
                 ONNX Runtime only (tract runs them 7-11x slower than float32); load it with \
                 the ort backend, or export the checkpoint again without --precision int8",
                dir.display()
            )));
        }
        let preprocessor = Preprocessor::load_with(&spec, &pkg, options.verify_hashes)?;
        let external = map_external(&pkg, &spec, options.verify_hashes)?;
        let external_sizes: Vec<(&str, u64)> = external
            .iter()
            .map(|e| (e.name.as_str(), e.data.len() as u64))
            .collect();
        let history: Vec<String> = spec
            .inputs
            .iter()
            .filter(|n| !spec.candidate_inputs.iter().any(|(_, c)| c == *n))
            .cloned()
            .collect();
        let rows = index_rows(&spec, &preprocessor);
        fn i64_inputs(names: &[String]) -> Vec<(&str, InputType)> {
            names.iter().map(|n| (n.as_str(), InputType::I64)).collect()
        }
        let rows_for = |names: &[String]| -> Vec<(&str, usize)> {
            rows.iter()
                .filter(|(n, _)| names.iter().any(|m| m == n))
                .map(|(n, r)| (n.as_str(), *r))
                .collect()
        };
        let graph_bytes = read_graph(
            &pkg,
            &spec,
            &external_sizes,
            &spec.graph_file,
            &Expect {
                inputs: i64_inputs(&spec.inputs),
                outputs: vec![spec.output.as_str()],
                rows: rows_for(&spec.inputs),
            },
        )?;
        let graph_sha256 = spec.digest(&spec.graph_file)?.sha256.clone();
        let loaded = backend::load_graph(
            options,
            &dir.join(&spec.graph_file),
            &graph_bytes,
            &external,
            &spec.inputs,
            std::slice::from_ref(&spec.output),
        )?;
        drop(graph_bytes);
        let split = match (&spec.split, NonZeroUsize::new(options.cache_capacity)) {
            (Some(sp), Some(capacity)) => {
                let encoder_bytes = read_graph(
                    &pkg,
                    &spec,
                    &external_sizes,
                    &sp.encoder_file,
                    &Expect {
                        inputs: i64_inputs(&history),
                        outputs: sp.encoder_outputs.iter().map(String::as_str).collect(),
                        rows: rows_for(&history),
                    },
                )?;
                let encoder = backend::load_graph(
                    options,
                    &dir.join(&sp.encoder_file),
                    &encoder_bytes,
                    &external,
                    &history,
                    &sp.encoder_outputs,
                )?;
                drop(encoder_bytes);
                let candidates: Vec<String> = spec
                    .candidate_inputs
                    .iter()
                    .map(|(_, n)| n.clone())
                    .collect();
                let mut scorer_inputs: Vec<(&str, InputType)> = sp
                    .encoder_outputs
                    .iter()
                    .map(|n| (n.as_str(), InputType::F32))
                    .collect();
                scorer_inputs.extend(i64_inputs(&candidates));
                let scorer_bytes = read_graph(
                    &pkg,
                    &spec,
                    &external_sizes,
                    &sp.scorer_file,
                    &Expect {
                        inputs: scorer_inputs,
                        outputs: vec![sp.scorer_output.as_str()],
                        rows: rows_for(&candidates),
                    },
                )?;
                let scorer = backend::load_graph(
                    options,
                    &dir.join(&sp.scorer_file),
                    &scorer_bytes,
                    &external,
                    &sp.scorer_inputs,
                    std::slice::from_ref(&sp.scorer_output),
                )?;
                Some(Split {
                    spec: sp.clone(),
                    encoder: encoder.graph,
                    scorer: scorer.graph,
                    cache: Mutex::new(EncodingCache::new(capacity, options.cache_bytes)),
                })
            }
            _ => None,
        };
        Ok(Model {
            spec,
            dir: dir.to_path_buf(),
            backend: options.backend,
            serving: loaded.serving,
            fallback_reason: loaded.fallback_reason,
            preprocessor,
            bucket: options.backend == Backend::Tract && options.tract_plans > 0,
            graph: loaded.graph,
            split,
            graph_sha256,
            metrics: Metrics::default(),
            exclude_seen: options.exclude_seen,
            batch_rows: options.batch_rows,
        })
    }

    /// What actually runs the graph (e.g. `OrtCpu` after a permissive GPU fallback).
    pub fn serving(&self) -> Serving {
        self.serving
    }

    /// Why a permissive GPU request is served by the CPU, if it is.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The package's spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The package directory this model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most candidates one request may carry (the package's `limits.max_candidates`).
    pub fn max_candidates(&self) -> usize {
        self.preprocessor.max_candidates()
    }

    /// The backend running the graph.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The graph inputs this model would build for `requests` (for tests and tools). On tract
    /// with shape-specialised plans they are padded to bucketed shapes
    /// ([`Preprocessor::prepare_bucketed`]).
    pub fn prepare(&self, requests: &[Request<'_>]) -> Result<Prepared> {
        if self.bucket {
            self.preprocessor.prepare_bucketed(requests)
        } else {
            self.preprocessor.prepare(requests)
        }
    }

    fn feeds(p: &Prepared) -> Vec<Feed<'_>> {
        p.tensors
            .iter()
            .map(|t| Feed::I64(&t.name, &t.shape, &t.data))
            .collect()
    }

    fn logits(out: Fetched, users: usize, candidates: usize) -> Result<Vec<f32>> {
        if out.shape != [users, candidates] {
            return Err(Error::Backend(format!(
                "graph output has shape {:?}, expected [{users}, {candidates}]",
                out.shape
            )));
        }
        Ok(out.data)
    }

    fn run_full(&self, p: &Prepared) -> Result<Vec<f32>> {
        let out = self
            .graph
            .run(&Model::feeds(p), &[self.spec.output.as_str()])?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::Backend("no output".into()))?;
        Model::logits(first, p.users, p.candidates)
    }

    /// Scores one user's candidates: one logit per candidate, in the candidates' order. The
    /// history is encoded once for all candidates.
    pub fn score(&self, request: &Request<'_>) -> Result<Vec<f32>> {
        self.metrics
            .observe(Entry::Score, || self.score_uncounted(request))
    }

    /// [`Model::score`] without recording it (the C ABI records the whole call).
    pub(crate) fn score_uncounted(&self, request: &Request<'_>) -> Result<Vec<f32>> {
        let prepared = self.prepare(std::slice::from_ref(request))?;
        let mut scores = self.run_full(&prepared)?;
        scores.truncate(request.candidates.len());
        self.mark_seen(request, &mut scores);
        Ok(scores)
    }

    /// Whether this model scores already-touched candidates `-inf` ([`LoadOptions::exclude_seen`]).
    pub fn excludes_seen(&self) -> bool {
        self.exclude_seen
    }

    /// With [`LoadOptions::exclude_seen`], sets the score of every candidate that one of the
    /// request's target-group behaviors names to `-inf`.
    fn mark_seen(&self, request: &Request<'_>, scores: &mut [f32]) {
        if !self.exclude_seen {
            return;
        }
        let target = self.spec.groups[self.spec.target].name.as_str();
        let seen: foldhash::HashSet<&str> = request
            .behaviors
            .iter()
            .filter(|b| b.group.is_none_or(|g| g == target))
            .map(|b| b.id)
            .collect();
        if seen.is_empty() {
            return;
        }
        for (score, id) in scores.iter_mut().zip(request.candidates) {
            if seen.contains(id) {
                *score = f32::NEG_INFINITY;
            }
        }
    }

    /// Scores several users. Returns one score vector per request, as long as its candidate
    /// list. Requests of similar sizes run together in one graph run, padded to the longest
    /// of their run; runs are formed so that padding never exceeds twice what was passed, so
    /// the cost is bounded by the input, not by the largest request times the batch size, and
    /// so that a run holds at most [`LoadOptions::batch_rows`] candidate rows.
    /// Each request's scores equal [`Model::score`]'s up to float rounding (a batch runs other
    /// tensor shapes, hence other kernels' summation orders).
    pub fn score_batch(&self, requests: &[Request<'_>]) -> Result<Vec<Vec<f32>>> {
        self.metrics
            .observe(Entry::ScoreBatch, || self.score_batch_uncounted(requests))
    }

    /// [`Model::score_batch`] without recording it (the C ABI records the whole call).
    pub(crate) fn score_batch_uncounted(&self, requests: &[Request<'_>]) -> Result<Vec<Vec<f32>>> {
        if requests.is_empty() {
            return Err(Error::invalid("no requests to score"));
        }
        // Validate every request first, so an error names its index in the caller's batch.
        for (u, r) in requests.iter().enumerate() {
            self.preprocessor.validate(r).map_err(|e| {
                if requests.len() > 1 {
                    crate::preprocess::prefix(e, &format!("requests[{u}]: "))
                } else {
                    e
                }
            })?;
        }
        let max_history = self.spec.groups.iter().map(|g| g.max_history).sum();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); requests.len()];
        for chunk in plan_chunks(requests, max_history, self.batch_rows, self.bucket) {
            let batch: Vec<Request<'_>> = chunk.iter().map(|&i| requests[i]).collect();
            let prepared = self.prepare(&batch)?;
            let flat = self.run_full(&prepared)?;
            for (row, &i) in flat.chunks(prepared.candidates.max(1)).zip(&chunk) {
                out[i] = row[..requests[i].candidates.len()].to_vec();
                self.mark_seen(&requests[i], &mut out[i]);
            }
        }
        Ok(out)
    }

    /// Like [`Model::score`], but reuses the user's encoding when the same `user_key` comes
    /// back with the same behaviors and request time (the fingerprint covers every behavior
    /// tensor, time buckets included). Needs a package with the split graphs and a cache
    /// capacity above 0; otherwise it is exactly [`Model::score`]. Results equal `score`'s.
    pub fn score_cached(&self, user_key: &str, request: &Request<'_>) -> Result<Vec<f32>> {
        self.metrics.observe(Entry::ScoreCached, || {
            self.score_cached_uncounted(user_key, request)
        })
    }

    /// [`Model::score_cached`] without recording it (the C ABI records the whole call).
    pub(crate) fn score_cached_uncounted(
        &self,
        user_key: &str,
        request: &Request<'_>,
    ) -> Result<Vec<f32>> {
        if user_key.len() > MAX_USER_KEY_BYTES {
            return Err(Error::invalid(format!(
                "user_key has {} bytes, more than the {MAX_USER_KEY_BYTES} allowed",
                user_key.len()
            )));
        }
        let Some(split) = &self.split else {
            return self.score_uncounted(request);
        };
        let p = self.prepare(std::slice::from_ref(request))?;
        // The history tensors feed the encoder (and the fingerprint), the candidate ones the
        // scorer: split them once.
        let (candidate_feeds, history_feeds): (Vec<Feed<'_>>, Vec<Feed<'_>>) =
            Model::feeds(&p).into_iter().partition(|f| {
                self.spec
                    .candidate_inputs
                    .iter()
                    .any(|(_, c)| c == f.name())
            });
        let mut hasher = DefaultHasher::new();
        for f in &history_feeds {
            if let Feed::I64(name, shape, data) = f {
                name.hash(&mut hasher);
                shape.hash(&mut hasher);
                data.hash(&mut hasher);
            }
        }
        let key = (user_key.to_owned(), hasher.finish());
        let lock = || {
            split
                .cache
                .lock()
                .map_err(|_| Error::Backend("encoding cache lock poisoned".into()))
        };
        let cached = lock()?.get(&key);
        let encoding = match cached {
            Some(e) => e,
            None => {
                let outs: Vec<&str> = split
                    .spec
                    .encoder_outputs
                    .iter()
                    .map(String::as_str)
                    .collect();
                let mut got = split.encoder.run(&history_feeds, &outs)?.into_iter();
                let (Some(encoded), Some(mask)) = (got.next(), got.next()) else {
                    return Err(Error::Backend(
                        "the encoder returned too few outputs".into(),
                    ));
                };
                let e = Arc::new(Encoding { encoded, mask });
                lock()?.insert(key, Arc::clone(&e));
                e
            }
        };
        let mut feeds = vec![
            Feed::F32(
                &split.spec.encoder_outputs[0],
                &encoding.encoded.shape,
                &encoding.encoded.data,
            ),
            Feed::F32(
                &split.spec.encoder_outputs[1],
                &encoding.mask.shape,
                &encoding.mask.data,
            ),
        ];
        feeds.extend(candidate_feeds);
        let out = split
            .scorer
            .run(&feeds, &[split.spec.scorer_output.as_str()])?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::Backend("no output".into()))?;
        let mut scores = Model::logits(first, p.users, p.candidates)?;
        scores.truncate(request.candidates.len());
        self.mark_seen(request, &mut scores);
        Ok(scores)
    }

    /// Counters of the tract plans specialised to exact input shapes, summed over the model's
    /// graphs (the full graph, and the split pair when loaded). All zero on ONNX Runtime.
    pub fn plan_cache_stats(&self) -> PlanStats {
        let mut stats = self.graph.plan_stats();
        if let Some(s) = &self.split {
            stats = stats + s.encoder.plan_stats() + s.scorer.plan_stats();
        }
        stats
    }

    /// The encoding cache's counters (all zero when the model has no cache).
    pub fn cache_stats(&self) -> CacheStats {
        match &self.split {
            Some(s) => match s.cache.lock() {
                Ok(c) => CacheStats {
                    hits: c.hits,
                    misses: c.misses,
                    entries: c.map.len(),
                    capacity: c.capacity,
                    bytes: c.bytes,
                    max_bytes: c.max_bytes,
                },
                Err(_) => CacheStats::default(),
            },
            None => CacheStats::default(),
        }
    }
}

impl Model {
    /// Runs one call of `entry` through the model's counters (the C ABI's scoring entry points).
    pub(crate) fn observe<T>(&self, entry: Entry, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.metrics.observe(entry, f)
    }

    /// The model's counters now: calls, failures by code and latency per entry point, the
    /// encoding cache, the tract plans and the busy ONNX Runtime sessions. Cheap (atomic loads
    /// and the cache's lock for a moment): fine to call on every metrics scrape.
    pub fn stats(&self) -> ModelStats {
        let graphs = self.graphs();
        ModelStats {
            calls: Entry::ALL.map(|e| self.metrics.snapshot(e)),
            cache: self.cache_stats(),
            plans: self.plan_cache_stats(),
            ort_sessions_busy: graphs.iter().map(|g| g.sessions_busy()).sum(),
            ort_sessions: graphs.iter().map(|g| g.sessions()).sum(),
        }
    }

    /// What identifies this model: package name, spec version, creator, the graph's SHA-256,
    /// vocabulary sizes, limits and what serves it.
    pub fn info(&self) -> ModelInfo {
        let spec = &self.spec;
        ModelInfo {
            name: spec.name.clone(),
            spec_version: spec.version,
            created_by: spec.created_by.clone(),
            input_mapping: spec.input_mapping.clone(),
            graph_sha256: self.graph_sha256.clone(),
            backend: self.backend,
            serving: self.serving,
            vocab_sizes: spec
                .tables
                .iter()
                .enumerate()
                .map(|(i, t)| (t, self.preprocessor.table_len(i)))
                .map(|(t, n)| (t.name.clone(), n))
                .collect(),
            max_candidates: spec.limits.max_candidates,
            max_behaviors: spec.limits.max_behaviors,
            max_history: spec
                .groups
                .iter()
                .map(|g| (g.name.clone(), g.max_history))
                .collect(),
        }
    }

    /// The model's graphs: the full one, and the split pair when loaded.
    fn graphs(&self) -> Vec<&dyn Graph> {
        let mut g: Vec<&dyn Graph> = vec![self.graph.as_ref()];
        if let Some(s) = &self.split {
            g.push(s.encoder.as_ref());
            g.push(s.scorer.as_ref());
        }
        g
    }
}

/// Reads graph file `file` of the package (checked against the manifest) and checks it against
/// the spec before any backend parses it.
fn read_graph(
    pkg: &PackageDir,
    spec: &Spec,
    external: &[(&str, u64)],
    file: &str,
    expect: &Expect<'_>,
) -> Result<Bytes> {
    let bytes = Bytes::from(pkg.read(file, MAX_GRAPH_BYTES, Some(spec.digest(file)?))?);
    onnx_check::check(file, bytes.clone(), expect, external)?;
    Ok(bytes)
}

/// The spec's external data files (`tables.bin`), each mapped once, read-only, after the
/// package checks (`PackageDir::map`): the graphs' checks and both backends read them from
/// this mapping, so nothing reopens a path that may have changed since.
fn map_external(pkg: &PackageDir, spec: &Spec, verify: VerifyHashes) -> Result<Vec<ExternalFile>> {
    spec.external_data
        .iter()
        .map(|rel| {
            let digest = spec.digest(rel)?;
            // A zero-length file cannot be mapped; it holds no tensor either.
            let data = if digest.bytes == 0 {
                pkg.read(rel, 0, Some(digest))?;
                Bytes::new()
            } else {
                Bytes::from_owner(pkg.map(rel, digest, verify == VerifyHashes::All)?)
            };
            Ok(ExternalFile {
                name: rel.clone(),
                data,
            })
        })
        .collect()
}

/// Rows of table `i`'s embedding: ids + 1, plus hashed buckets (version 3).
fn table_rows(pre: &Preprocessor, i: usize) -> usize {
    usize::try_from(pre.table_rows(i)).unwrap_or(usize::MAX)
}

/// For every index input the preprocessing fills, the rows its embedding tables need: the
/// largest index it can produce, plus one.
fn index_rows(spec: &Spec, pre: &Preprocessor) -> Vec<(String, usize)> {
    let mut rows = Vec::new();
    for g in &spec.groups {
        for f in &g.features {
            rows.push((f.input.clone(), table_rows(pre, f.table)));
        }
        rows.push((g.action_input.clone(), spec.actions.len() + 1));
        rows.push((g.time_input.clone(), spec.time_buckets.boundaries.len() + 1));
    }
    let target = &spec.groups[spec.target];
    for (f, input) in &spec.candidate_inputs {
        if let Some(feature) = target.features.get(*f) {
            rows.push((input.clone(), table_rows(pre, feature.table)));
        }
    }
    rows
}

/// Splits a batch into runs whose padding stays within a constant factor of what was passed:
/// requests sorted by candidate count, then history size, are grouped greedily while the
/// chunk's padded candidate positions (rows x longest list) stay at most twice its real ones,
/// and likewise for behaviors, and its candidate rows (rows x longest list) stay at most
/// `max_rows` (0: no limit; a request longer than that runs alone), counted as the graph will
/// run them: with `bucket` (tract's shape buckets), the row count and the longest list each
/// rounded up to a power of two. One request with 10,000 candidates among 4,095 with one thus
/// runs alone instead of padding all 4,096 to 10,000. Returns indices into `requests`.
fn plan_chunks(
    requests: &[Request<'_>],
    max_history: usize,
    max_rows: usize,
    bucket: bool,
) -> Vec<Vec<usize>> {
    let pad = |x: usize| {
        if bucket {
            x.checked_next_power_of_two().unwrap_or(x)
        } else {
            x
        }
    };
    let size = |r: &Request<'_>| {
        (
            r.candidates.len().max(1),
            r.behaviors.len().min(max_history).max(1),
        )
    };
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| size(&requests[i]));
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let (mut sum_n, mut sum_h, mut max_n, mut max_h) = (0usize, 0usize, 0usize, 0usize);
    for i in order {
        let (n, h) = size(&requests[i]);
        let fits = chunks.last().is_some_and(|c| {
            let rows = c.len() + 1;
            rows * max_n.max(n) <= 2 * (sum_n + n)
                && rows * max_h.max(h) <= 2 * (sum_h + h)
                && (max_rows == 0 || pad(rows) * pad(max_n.max(n)) <= max_rows)
        });
        if !fits {
            chunks.push(Vec::new());
            (sum_n, sum_h, max_n, max_h) = (0, 0, 0, 0);
        }
        if let Some(c) = chunks.last_mut() {
            c.push(i);
        }
        sum_n += n;
        sum_h += h;
        max_n = max_n.max(n);
        max_h = max_h.max(h);
    }
    chunks
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn one_long_request_does_not_pad_the_others() {
        let long: Vec<&str> = vec!["x"; 10_000];
        let mut requests = vec![
            Request {
                behaviors: &[],
                candidates: &["a"],
                request_time: 0,
            };
            4096
        ];
        requests[17].candidates = &long;
        let chunks = plan_chunks(&requests, 50, 0, false);
        let mut seen: Vec<usize> = chunks.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..4096).collect::<Vec<_>>(),
            "every request exactly once"
        );
        let padded: usize = chunks
            .iter()
            .map(|c| {
                c.len()
                    * c.iter()
                        .map(|&i| requests[i].candidates.len())
                        .max()
                        .unwrap_or(0)
            })
            .sum();
        let real: usize = requests.iter().map(|r| r.candidates.len()).sum();
        assert!(
            padded <= 2 * real,
            "padded {padded} positions for {real} real ones"
        );
        assert!(
            chunks.iter().any(|c| c == &vec![17]),
            "the long request runs alone"
        );
    }

    #[test]
    fn a_run_holds_at_most_max_rows_candidate_rows() {
        let lists: Vec<Vec<&str>> = [1usize, 3, 100, 100, 250, 1000, 1000, 2000]
            .iter()
            .map(|&n| vec!["x"; n])
            .collect();
        let mut requests = Vec::new();
        for _ in 0..40 {
            for l in &lists {
                requests.push(Request {
                    behaviors: &[],
                    candidates: l,
                    request_time: 0,
                });
            }
        }
        for (max_rows, bucket) in [
            (0usize, false),
            (1, false),
            (512, true),
            (1024, false),
            (1024, true),
            (5000, false),
        ] {
            let pad = |x: usize| if bucket { x.next_power_of_two() } else { x };
            let chunks = plan_chunks(&requests, 50, max_rows, bucket);
            let mut seen: Vec<usize> = chunks.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(
                seen,
                (0..requests.len()).collect::<Vec<_>>(),
                "max_rows {max_rows}"
            );
            for c in &chunks {
                let longest = c.iter().map(|&i| requests[i].candidates.len()).max();
                let rows = pad(c.len()) * pad(longest.unwrap_or(0));
                assert!(
                    max_rows == 0 || rows <= max_rows || c.len() == 1,
                    "max_rows {max_rows}: a run of {} requests, {rows} rows",
                    c.len()
                );
            }
            if max_rows == 0 {
                // no cap: the 40 one-candidate requests (40 rows) share a run
                assert!(chunks.iter().any(|c| c.len() >= 40), "max_rows 0");
            }
        }
    }
}
