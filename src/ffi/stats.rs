//! `atrank_model_stats` (a model's counters, into a plain struct) and `atrank_model_info` (what
//! identifies a model, as an owned `atrank_info` object with accessors).

use std::ffi::{c_char, CString};

use super::{atrank_error, atrank_model, guard, wrap};
use crate::metrics::{CallStats, Entry, ModelInfo, CODE_SLOTS, LATENCY_BOUNDS_NS, LATENCY_BUCKETS};
use crate::{Error, Model, Result};

/// Slots of `atrank_call_stats.failures`, indexed by `atrank_code` (slot 0, `ATRANK_OK`, stays
/// 0; codes added later than the array's length would count in the last slot).
pub const ATRANK_STATS_CODES: usize = 16;
/// Buckets of `atrank_call_stats.latency_counts` (the last one is +Inf); their upper bounds come
/// from `atrank_latency_bounds`.
pub const ATRANK_LATENCY_BUCKETS: usize = 14;

const _: () =
    assert!(ATRANK_STATS_CODES == CODE_SLOTS && ATRANK_LATENCY_BUCKETS == LATENCY_BUCKETS);

/// Counters of one scoring entry point since the model was loaded.
///
/// Ownership and thread safety: plain data owned by the caller, filled by `atrank_model_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct atrank_call_stats {
    /// Calls made, successful and failed (calls with a NULL model are not counted: there is no
    /// model to count them on).
    pub calls: u64,
    /// Failed calls by error code: `failures[ATRANK_ERROR_BACKEND]` counts the calls that
    /// returned an error with that code. Index 0 (`ATRANK_OK`) stays 0.
    pub failures: [u64; ATRANK_STATS_CODES],
    /// Successful calls per latency bucket. Not cumulative: bucket `i` counts the calls that took
    /// more than bound `i - 1` and at most bound `i` (`atrank_latency_bounds`). Their sum is the
    /// number of successful calls.
    pub latency_counts: [u64; ATRANK_LATENCY_BUCKETS],
    /// Total latency of the successful calls, in nanoseconds (measured from entry to return of
    /// the atrank function, argument checks included).
    pub latency_sum_ns: u64,
}

/// A snapshot of a model's counters (`atrank_model_stats`). Counters start at 0 when the model is
/// loaded and only grow; a reloaded model starts again at 0. They are read one by one while
/// other threads may be scoring: a call in flight may show in `calls` but not yet in a latency
/// bucket.
///
/// ABI evolution: fields are only ever appended. `size` says how many bytes of the struct the
/// library filled; a field that ends beyond it was not written.
///
/// Ownership and thread safety: plain data owned by the caller, filled by `atrank_model_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct atrank_stats {
    /// Bytes of this struct the library wrote (this header's `sizeof(atrank_stats)` when the
    /// library is as new as the header or newer).
    pub size: usize,
    /// `atrank_model_score` and `atrank_handle_score`.
    pub score: atrank_call_stats,
    /// `atrank_model_score_cached`.
    pub score_cached: atrank_call_stats,
    /// `atrank_model_score_batch` (one call per batch, whatever its number of requests).
    pub score_batch: atrank_call_stats,
    /// `atrank_model_score_cached` calls served from a cached user encoding.
    pub cache_hits: u64,
    /// `atrank_model_score_cached` calls that ran the encoder.
    pub cache_misses: u64,
    /// User encodings cached now.
    pub cache_entries: u64,
    /// The most user encodings the cache holds (0: no cache).
    pub cache_capacity: u64,
    /// tract plans specialised to exact input shapes built so far (evicted ones included).
    pub tract_plans_built: u64,
    /// tract shape-specialised plans held now.
    pub tract_plans: u64,
    /// Shapes whose specialised tract plan failed to build (they run the symbolic plan).
    pub tract_plan_build_failures: u64,
    /// tract runs on the plan with symbolic dimensions.
    pub tract_symbolic_runs: u64,
    /// tract runs on a shape-specialised plan.
    pub tract_concrete_runs: u64,
    /// ONNX Runtime sessions running a graph right now (0 on tract).
    pub ort_sessions_busy: u64,
    /// ONNX Runtime sessions the model holds (0 on tract).
    pub ort_sessions: u64,
    /// Attention cores that tract runs as atrank's fused kernel, summed over the model's
    /// graphs (0 on ONNX Runtime, and when the fusion is off:
    /// `atrank_model_builder_set_tract_fusion`). Added after the first version of the struct.
    pub tract_fused_attention: u64,
    /// Layer normalisations that tract runs as atrank's fused kernel, summed over the graphs
    /// (0 on ONNX Runtime, and when the fusion is off). Added after the first version.
    pub tract_fused_layer_norm: u64,
}

impl From<&CallStats> for atrank_call_stats {
    fn from(c: &CallStats) -> Self {
        atrank_call_stats {
            calls: c.calls,
            failures: c.failures,
            latency_counts: c.latency_counts,
            latency_sum_ns: c.latency_sum_ns,
        }
    }
}

/// The smallest `stats_out_size` accepted: the size of the first version of `atrank_stats`,
/// which ended with `ort_sessions`.
const STATS_V1_SIZE: usize = std::mem::offset_of!(atrank_stats, tract_fused_attention);
const _: () = assert!(STATS_V1_SIZE == 8 + 3 * std::mem::size_of::<atrank_call_stats>() + 11 * 8);

fn stats_of(model: &Model) -> atrank_stats {
    let s = model.stats();
    let n = |v: usize| v as u64;
    atrank_stats {
        size: std::mem::size_of::<atrank_stats>(),
        score: s.entry(Entry::Score).into(),
        score_cached: s.entry(Entry::ScoreCached).into(),
        score_batch: s.entry(Entry::ScoreBatch).into(),
        cache_hits: s.cache.hits,
        cache_misses: s.cache.misses,
        cache_entries: n(s.cache.entries),
        cache_capacity: n(s.cache.capacity),
        tract_plans_built: s.plans.plans_built,
        tract_plans: n(s.plans.plans),
        tract_plan_build_failures: s.plans.build_failures,
        tract_symbolic_runs: s.plans.symbolic_runs,
        tract_concrete_runs: s.plans.concrete_runs,
        ort_sessions_busy: n(s.ort_sessions_busy),
        ort_sessions: n(s.ort_sessions),
        tract_fused_attention: n(s.plans.fused_attention),
        tract_fused_layer_norm: n(s.plans.fused_layer_norm),
    }
}

/// Runs the body of a scoring entry point on `model`'s counters for `entry` (a NULL model is
/// left to the body to report, uncounted).
pub(crate) fn observed(
    model: *const atrank_model,
    entry: Entry,
    f: impl FnOnce() -> Result<()>,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the entry points' contract.
        match unsafe { atrank_model::as_model(model, "model") } {
            Ok(m) => m.observe(entry, f),
            Err(_) => f(),
        }
    })
}

/// Writes a snapshot of `model`'s counters to `*stats_out`: per scoring entry point the calls,
/// failures by error code and a latency histogram of the successful calls; the user-encoding
/// cache; the tract plans; the busy ONNX Runtime sessions. Cheap (atomic reads): fine to call on
/// every metrics scrape.
///
/// Pass `stats_out_size = sizeof(atrank_stats)`: the library writes at most that many bytes and
/// sets `stats_out->size` to the number it wrote (see `atrank_stats`, "ABI evolution"); a size
/// smaller than the first version of the struct gives `ATRANK_ERROR_BUFFER_SIZE`.
///
/// Ownership: borrows `model`; `*stats_out` is the caller's, written only on success. NULL:
/// `model` or `stats_out` NULL gives `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: thread-safe
/// (concurrent with scoring on the same model).
#[no_mangle]
pub extern "C" fn atrank_model_stats(
    model: *const atrank_model,
    stats_out: *mut atrank_stats,
    stats_out_size: usize,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        if stats_out.is_null() {
            return Err(Error::NullArgument("stats_out".into()));
        }
        if stats_out_size < STATS_V1_SIZE {
            return Err(Error::BufferSize(format!(
                "stats_out_size is {stats_out_size}; pass sizeof(atrank_stats) ({STATS_V1_SIZE} \
                 or more)"
            )));
        }
        let mut stats = stats_of(model);
        // Whole fields only: every field after `size` is 8 bytes wide.
        let n = stats_out_size.min(std::mem::size_of::<atrank_stats>()) & !7;
        stats.size = n;
        // SAFETY: `stats_out` is non-NULL with room for `stats_out_size >= n` bytes per the
        // contract; copied byte-wise, so no alignment is assumed; `stats` is a local.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&stats as *const atrank_stats).cast::<u8>(),
                stats_out.cast::<u8>(),
                n,
            )
        };
        Ok(())
    })
}

/// Writes the upper bounds of the latency buckets, in nanoseconds, to `bounds_out` (inclusive;
/// the last is `UINT64_MAX`, i.e. +Inf): 50 us, 100 us, 250 us, 500 us, 1 ms, 2.5 ms, 5 ms,
/// 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 1 s, +Inf. They are fixed for a library version.
///
/// Ownership: `bounds_out` is the caller's, written only on success. NULL: `bounds_out` NULL
/// gives `ATRANK_ERROR_NULL_ARGUMENT`; `bounds_out_len` other than `ATRANK_LATENCY_BUCKETS` gives
/// `ATRANK_ERROR_BUFFER_SIZE`. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_latency_bounds(
    bounds_out: *mut u64,
    bounds_out_len: usize,
) -> *mut atrank_error {
    wrap(|| {
        if bounds_out.is_null() {
            return Err(Error::NullArgument("bounds_out".into()));
        }
        if bounds_out_len != ATRANK_LATENCY_BUCKETS {
            return Err(Error::BufferSize(format!(
                "bounds_out_len is {bounds_out_len}; it must be ATRANK_LATENCY_BUCKETS \
                 ({ATRANK_LATENCY_BUCKETS})"
            )));
        }
        if !bounds_out.is_aligned() {
            return Err(Error::invalid("bounds_out is not aligned for uint64_t"));
        }
        // SAFETY: non-NULL, aligned, room for `ATRANK_LATENCY_BUCKETS` values per the contract.
        unsafe {
            std::ptr::copy_nonoverlapping(LATENCY_BOUNDS_NS.as_ptr(), bounds_out, LATENCY_BUCKETS)
        };
        Ok(())
    })
}

/// What identifies a loaded model: package name, spec version, creator, the graph's SHA-256,
/// vocabulary sizes, limits and what serves it. Made by `atrank_model_info`; read with the
/// `atrank_info_*` accessors, whose strings it owns.
///
/// Thread safety: immutable; every accessor may be called from any number of threads at once.
/// Ownership: freed once with `atrank_info_free` (independently of the model).
pub struct atrank_info {
    _private: [u8; 0],
}

struct Info {
    name: CString,
    created_by: CString,
    input_mapping: CString,
    graph_sha256: CString,
    serving: CString,
    spec_version: u32,
    max_candidates: usize,
    max_behaviors: usize,
    tables: Vec<(CString, usize)>,
    groups: Vec<(CString, usize)>,
}

fn cstring(s: &str) -> CString {
    // Package strings come from JSON and cannot hold NUL... except as an escape (`\u0000`):
    // cut there rather than fail.
    CString::new(s.split('\0').next().unwrap_or_default()).unwrap_or_default()
}

impl Info {
    fn new(i: &ModelInfo) -> Info {
        Info {
            name: cstring(&i.name),
            created_by: cstring(i.created_by.as_deref().unwrap_or("")),
            input_mapping: cstring(i.input_mapping.as_deref().unwrap_or("")),
            graph_sha256: cstring(&i.graph_sha256),
            serving: cstring(i.serving.name()),
            spec_version: i.spec_version,
            max_candidates: i.max_candidates,
            max_behaviors: i.max_behaviors,
            tables: i
                .vocab_sizes
                .iter()
                .map(|(n, s)| (cstring(n), *s))
                .collect(),
            groups: i
                .max_history
                .iter()
                .map(|(n, s)| (cstring(n), *s))
                .collect(),
        }
    }
}

/// # Safety
/// `ptr` must be NULL or a live `atrank_info` from `atrank_model_info`.
unsafe fn as_info<'a>(ptr: *const atrank_info) -> Option<&'a Info> {
    // SAFETY: non-NULL pointers are `Box<Info>`s made by `atrank_model_info`, alive until
    // `atrank_info_free`, per the caller's contract.
    unsafe { ptr.cast::<Info>().as_ref() }
}

/// Writes a new `atrank_info` describing `model` to `*info_out`.
///
/// Ownership: on success the caller owns `*info_out` and frees it with `atrank_info_free`; it
/// does not borrow `model` (either may be freed first). On error `*info_out` is untouched. NULL:
/// `model` or `info_out` NULL gives `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_model_info(
    model: *const atrank_model,
    info_out: *mut *mut atrank_info,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        if info_out.is_null() {
            return Err(Error::NullArgument("info_out".into()));
        }
        let info = Box::into_raw(Box::new(Info::new(&model.info())));
        // SAFETY: non-NULL and writable per the contract.
        unsafe { info_out.write(info.cast()) };
        Ok(())
    })
}

/// Frees an `atrank_info`.
///
/// Ownership: takes `info` back; the strings its accessors returned become invalid. NULL:
/// accepted and ignored. Thread safety: exclusive (call it once, after every other call using
/// `info` has returned).
#[no_mangle]
pub extern "C" fn atrank_info_free(info: *mut atrank_info) {
    guard((), || {
        if !info.is_null() {
            // SAFETY: a live `Box<Info>` from `atrank_model_info`, freed once per the contract.
            drop(unsafe { Box::from_raw(info.cast::<Info>()) });
        }
    })
}

fn string_of(info: *const atrank_info, f: impl FnOnce(&Info) -> &CString) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or live, per each accessor's contract.
        unsafe { as_info(info) }.map_or(std::ptr::null(), |i| f(i).as_ptr())
    })
}

fn number_of<T: Copy>(info: *const atrank_info, zero: T, f: impl FnOnce(&Info) -> T) -> T {
    // SAFETY: NULL or live, per each accessor's contract.
    guard(zero, || unsafe { as_info(info) }.map_or(zero, f))
}

/// The package's `name` (may be empty), NUL-terminated UTF-8.
///
/// Ownership: owned by `info`, valid until `atrank_info_free`. NULL: `info` NULL returns NULL.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_name(info: *const atrank_info) -> *const c_char {
    string_of(info, |i| &i.name)
}

/// The package's `created_by` (what wrote it, e.g. "atrank-export 0.1.0 (torch 2.15.0)"), or ""
/// when the spec does not say.
///
/// Ownership: owned by `info`, valid until `atrank_info_free`. NULL: `info` NULL returns NULL.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_created_by(info: *const atrank_info) -> *const c_char {
    string_of(info, |i| &i.created_by)
}

/// The package's `input_mapping` as compact JSON (`{"actions": {...}, "features": {...},
/// "order": "...", "time": "...", ...}`: what each action means and the rule that produced it,
/// each feature's source, how behaviors with equal timestamps are ordered), or "" when the
/// package has none (packages written before it existed). The same text, for people, is the
/// package's README.md.
///
/// Ownership: owned by `info`, valid until `atrank_info_free`. NULL: `info` NULL returns NULL.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_input_mapping(info: *const atrank_info) -> *const c_char {
    string_of(info, |i| &i.input_mapping)
}

/// SHA-256 of the package's main graph file (`graph.file`, e.g. model.onnx) as read at load, 64
/// lower-case hex digits: tells which exact model is serving.
///
/// Ownership: owned by `info`, valid until `atrank_info_free`. NULL: `info` NULL returns NULL.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_graph_sha256(info: *const atrank_info) -> *const c_char {
    string_of(info, |i| &i.graph_sha256)
}

/// What runs the graph: "ort-cpu", "ort-cuda" or "tract".
///
/// Ownership: owned by `info`, valid until `atrank_info_free`. NULL: `info` NULL returns NULL.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_serving(info: *const atrank_info) -> *const c_char {
    string_of(info, |i| &i.serving)
}

/// The package's `spec_version`.
///
/// Ownership: borrows `info`. NULL: `info` NULL returns 0. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_spec_version(info: *const atrank_info) -> u32 {
    number_of(info, 0, |i| i.spec_version)
}

/// The package's `limits.max_candidates`.
///
/// Ownership: borrows `info`. NULL: `info` NULL returns 0. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_max_candidates(info: *const atrank_info) -> usize {
    number_of(info, 0, |i| i.max_candidates)
}

/// The package's `limits.max_behaviors`.
///
/// Ownership: borrows `info`. NULL: `info` NULL returns 0. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_max_behaviors(info: *const atrank_info) -> usize {
    number_of(info, 0, |i| i.max_behaviors)
}

/// The number of embedding tables (vocabularies), for `atrank_info_table_name` and
/// `atrank_info_table_vocab_size`.
///
/// Ownership: borrows `info`. NULL: `info` NULL returns 0. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_table_count(info: *const atrank_info) -> usize {
    number_of(info, 0, |i| i.tables.len())
}

/// The name of embedding table `index` (0 .. `atrank_info_table_count` - 1), in the spec's order.
///
/// Ownership: owned by `info`, valid until `atrank_info_free`. NULL: `info` NULL, or `index` out
/// of range, returns NULL. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_table_name(info: *const atrank_info, index: usize) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or live, per the contract.
        unsafe { as_info(info) }
            .and_then(|i| i.tables.get(index))
            .map_or(std::ptr::null(), |t| t.0.as_ptr())
    })
}

/// The number of ids in embedding table `index`'s vocabulary (its file's lines; index 0, unknown,
/// not included).
///
/// Ownership: borrows `info`. NULL: `info` NULL, or `index` out of range, returns 0.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_table_vocab_size(info: *const atrank_info, index: usize) -> usize {
    number_of(info, 0, |i| i.tables.get(index).map_or(0, |t| t.1))
}

/// The number of behavior groups, for `atrank_info_group_name` and
/// `atrank_info_group_max_history`.
///
/// Ownership: borrows `info`. NULL: `info` NULL returns 0. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_group_count(info: *const atrank_info) -> usize {
    number_of(info, 0, |i| i.groups.len())
}

/// The name of behavior group `index` (0 .. `atrank_info_group_count` - 1), in the spec's order.
///
/// Ownership: owned by `info`, valid until `atrank_info_free`. NULL: `info` NULL, or `index` out
/// of range, returns NULL. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_group_name(info: *const atrank_info, index: usize) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or live, per the contract.
        unsafe { as_info(info) }
            .and_then(|i| i.groups.get(index))
            .map_or(std::ptr::null(), |g| g.0.as_ptr())
    })
}

/// Group `index`'s `max_history` (the most behaviors of that group one request keeps).
///
/// Ownership: borrows `info`. NULL: `info` NULL, or `index` out of range, returns 0.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_info_group_max_history(info: *const atrank_info, index: usize) -> usize {
    number_of(info, 0, |i| i.groups.get(index).map_or(0, |g| g.1))
}
