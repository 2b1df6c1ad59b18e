//! Operational counters of a [`crate::Model`] ([`ModelStats`], from [`crate::Model::stats`])
//! and what identifies it ([`ModelInfo`], from [`crate::Model::info`]): what a service that
//! embeds atrank exports to its monitoring (e.g. as Prometheus metrics).
//!
//! Each scoring entry point ([`Entry`]) has its own counters: calls, failures by
//! [`ErrorCode`], and a latency histogram of the successful calls with fixed bucket bounds
//! ([`LATENCY_BOUNDS_NS`]). Recording a call costs one `Instant` pair and three relaxed atomic
//! additions (calls, one bucket, the latency sum; a failure: calls and its code), with no lock.
//! A snapshot reads the counters one by one: each is monotonic, but a snapshot taken while calls
//! run may count a call in `calls` and not yet in its bucket (or the reverse).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::backend::{Backend, PlanStats, Serving};
use crate::model::CacheStats;
use crate::{Error, ErrorCode, Result};

/// Slots of the failures-by-code arrays, indexed by [`ErrorCode`] value (slot 0, success, stays
/// 0). Codes at or above it (none today) count in the last slot.
pub const CODE_SLOTS: usize = 16;

/// Upper bounds (inclusive, nanoseconds) of the latency histogram's buckets: 50 µs, 100 µs,
/// 250 µs, 500 µs, 1 ms, 2.5 ms, 5 ms, 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 1 s, and `u64::MAX`
/// (+Inf). Bucket `i` counts the calls that took more than bound `i - 1` and at most bound `i`
/// (the counts are per bucket, not cumulative; Prometheus' `le` buckets are their running sums).
pub const LATENCY_BOUNDS_NS: [u64; LATENCY_BUCKETS] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    u64::MAX,
];

/// Buckets of the latency histogram (the last one is +Inf).
pub const LATENCY_BUCKETS: usize = 14;

/// The [`ErrorCode`] counted in failures slot `slot`, if any.
// ERROR_CODE_LIST: keep in step with `ErrorCode` (src/error.rs).
pub fn error_code(slot: usize) -> Option<ErrorCode> {
    Some(match slot {
        1 => ErrorCode::NullArgument,
        2 => ErrorCode::InvalidArgument,
        3 => ErrorCode::InvalidUtf8,
        4 => ErrorCode::Io,
        5 => ErrorCode::InvalidPackage,
        6 => ErrorCode::BackendUnavailable,
        7 => ErrorCode::Backend,
        8 => ErrorCode::Panic,
        9 => ErrorCode::BufferSize,
        _ => return None,
    })
}

/// A scoring entry point, counted separately (their latencies differ: a batch scores many users).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// [`crate::Model::score`] (`atrank_model_score`, `atrank_handle_score`).
    Score = 0,
    /// [`crate::Model::score_cached`] (`atrank_model_score_cached`).
    ScoreCached = 1,
    /// [`crate::Model::score_batch`] (`atrank_model_score_batch`).
    ScoreBatch = 2,
}

impl Entry {
    /// Every entry point, in index order.
    pub const ALL: [Entry; 3] = [Entry::Score, Entry::ScoreCached, Entry::ScoreBatch];

    /// Lower-case name (`score`, `score_cached`, `score_batch`), e.g. for a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Entry::Score => "score",
            Entry::ScoreCached => "score_cached",
            Entry::ScoreBatch => "score_batch",
        }
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    failures: [AtomicU64; CODE_SLOTS],
    latency: [AtomicU64; LATENCY_BUCKETS],
    latency_sum_ns: AtomicU64,
}

impl Counters {
    fn record(&self, elapsed: Duration, failure: Option<ErrorCode>) {
        self.calls.fetch_add(1, Relaxed);
        match failure {
            Some(code) => {
                let slot = (code as usize).min(CODE_SLOTS - 1);
                self.failures[slot].fetch_add(1, Relaxed);
            }
            None => {
                let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                self.latency[bucket(ns)].fetch_add(1, Relaxed);
                self.latency_sum_ns.fetch_add(ns, Relaxed);
            }
        }
    }

    fn snapshot(&self) -> CallStats {
        CallStats {
            calls: self.calls.load(Relaxed),
            failures: std::array::from_fn(|i| self.failures[i].load(Relaxed)),
            latency_counts: std::array::from_fn(|i| self.latency[i].load(Relaxed)),
            latency_sum_ns: self.latency_sum_ns.load(Relaxed),
        }
    }
}

/// The histogram bucket of a latency in nanoseconds.
fn bucket(ns: u64) -> usize {
    LATENCY_BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// A model's live counters, one set per [`Entry`] (each [`crate::Model`] holds one). Public so
/// that the recording cost can be measured on its own (`benches/runtime.rs`).
#[derive(Default)]
pub struct Metrics {
    entries: [Counters; 3],
}

/// Records one call when finished; a call that unwinds (a panic) counts as a
/// [`ErrorCode::Panic`] failure.
struct Pending<'a> {
    counters: &'a Counters,
    start: Instant,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.counters
                .record(self.start.elapsed(), Some(ErrorCode::Panic));
        }
    }
}

impl Metrics {
    /// Runs one call of `entry` and records it: its latency when it succeeds, its error code
    /// when it fails.
    pub fn observe<T>(&self, entry: Entry, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut pending = Pending {
            counters: &self.entries[entry as usize],
            start: Instant::now(),
            done: false,
        };
        let result = f();
        pending.done = true;
        pending.counters.record(
            pending.start.elapsed(),
            result.as_ref().err().map(Error::code),
        );
        result
    }

    /// Records a finished call: its latency when `failure` is `None`, else its error code.
    pub fn record(&self, entry: Entry, elapsed: Duration, failure: Option<ErrorCode>) {
        self.entries[entry as usize].record(elapsed, failure);
    }

    /// The counters of `entry` now.
    pub fn snapshot(&self, entry: Entry) -> CallStats {
        self.entries[entry as usize].snapshot()
    }
}

/// Counters of one scoring entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallStats {
    /// Calls made (successful and failed).
    pub calls: u64,
    /// Failed calls by [`ErrorCode`] value (index 0 stays 0).
    pub failures: [u64; CODE_SLOTS],
    /// Successful calls per latency bucket ([`LATENCY_BOUNDS_NS`]; not cumulative).
    pub latency_counts: [u64; LATENCY_BUCKETS],
    /// Total latency of the successful calls, in nanoseconds.
    pub latency_sum_ns: u64,
}

impl CallStats {
    /// Failed calls, all codes.
    pub fn failed(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// Successful calls (the histogram's count).
    pub fn succeeded(&self) -> u64 {
        self.latency_counts.iter().sum()
    }

    /// Failed calls with error code `code`.
    pub fn failures_with(&self, code: ErrorCode) -> u64 {
        self.failures[(code as usize).min(CODE_SLOTS - 1)]
    }

    /// Mean latency of the successful calls, `None` without any.
    pub fn mean_latency(&self) -> Option<Duration> {
        let n = self.succeeded();
        (n > 0).then(|| Duration::from_nanos(self.latency_sum_ns / n))
    }

    /// The `q`-quantile (0..=1) of the successful calls' latency, estimated from the histogram
    /// as Prometheus' `histogram_quantile` does: linear within the bucket it falls in (from 0 in
    /// the first); a quantile in the +Inf bucket is given as the last finite bound (1 s).
    /// `None` without any successful call.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let n = self.succeeded();
        if n == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * n as f64;
        let mut below = 0u64;
        for (i, &count) in self.latency_counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                if i == LATENCY_BUCKETS - 1 {
                    return Some(Duration::from_nanos(LATENCY_BOUNDS_NS[i - 1]));
                }
                let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_NS[i - 1] } as f64;
                let upper = LATENCY_BOUNDS_NS[i] as f64;
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(Duration::from_nanos(
                    (lower + (upper - lower) * within) as u64,
                ));
            }
            below += count;
        }
        None
    }
}

impl std::ops::Add for CallStats {
    type Output = CallStats;
    fn add(self, o: CallStats) -> CallStats {
        CallStats {
            calls: self.calls + o.calls,
            failures: std::array::from_fn(|i| self.failures[i] + o.failures[i]),
            latency_counts: std::array::from_fn(|i| self.latency_counts[i] + o.latency_counts[i]),
            latency_sum_ns: self.latency_sum_ns + o.latency_sum_ns,
        }
    }
}

/// A snapshot of a model's counters ([`crate::Model::stats`]). They start at zero when the model
/// is loaded: a reloaded model ([`crate::ModelHandle::reload`]) starts again (a counter reset, as
/// Prometheus' `rate()` expects on a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelStats {
    /// Per entry point, indexed by [`Entry`] value.
    pub calls: [CallStats; 3],
    /// The user-encoding cache ([`crate::Model::cache_stats`]).
    pub cache: CacheStats,
    /// The tract plans ([`crate::Model::plan_cache_stats`]; zero on ONNX Runtime).
    pub plans: PlanStats,
    /// ONNX Runtime sessions running a graph now, summed over the model's graphs (0 on tract).
    pub ort_sessions_busy: usize,
    /// ONNX Runtime sessions the model holds, summed over its graphs (0 on tract).
    pub ort_sessions: usize,
}

impl ModelStats {
    /// The counters of one entry point.
    pub fn entry(&self, entry: Entry) -> &CallStats {
        &self.calls[entry as usize]
    }

    /// The counters of every entry point added up.
    pub fn total(&self) -> CallStats {
        self.calls
            .iter()
            .fold(CallStats::default(), |acc, c| acc + *c)
    }
}

/// What identifies a loaded model ([`crate::Model::info`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The package's `name` (may be empty).
    pub name: String,
    /// The package's `spec_version`.
    pub spec_version: u32,
    /// The package's `created_by` (the exporter and its versions), if it says.
    pub created_by: Option<String>,
    /// The package's `input_mapping` as compact JSON ([`crate::spec::Spec::input_mapping`]):
    /// what its actions and features mean and how equal timestamps are ordered.
    pub input_mapping: Option<String>,
    /// SHA-256 of the main graph file (`graph.file`, e.g. `model.onnx`), lower-case hex.
    pub graph_sha256: String,
    /// The backend.
    pub backend: Backend,
    /// What runs the graph.
    pub serving: Serving,
    /// Ids per embedding table (its vocabulary's lines), in the spec's table order.
    pub vocab_sizes: Vec<(String, usize)>,
    /// `limits.max_candidates`.
    pub max_candidates: usize,
    /// `limits.max_behaviors`.
    pub max_behaviors: usize,
    /// Each behavior group's `max_history`, in the spec's group order.
    pub max_history: Vec<(String, usize)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_slots_are_the_code_values() {
        for slot in 0..CODE_SLOTS {
            if let Some(code) = error_code(slot) {
                assert_eq!(code as usize, slot);
            }
        }
        assert_eq!((1..CODE_SLOTS).filter_map(error_code).count(), 9);
    }

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(50_000), 0);
        assert_eq!(bucket(50_001), 1);
        assert_eq!(bucket(1_000_000_000), LATENCY_BUCKETS - 2);
        assert_eq!(bucket(1_000_000_001), LATENCY_BUCKETS - 1);
        assert_eq!(bucket(u64::MAX), LATENCY_BUCKETS - 1);
        assert!(LATENCY_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn records_successes_in_the_histogram_and_failures_by_code() {
        let m = Metrics::default();
        m.record(Entry::Score, Duration::from_micros(30), None);
        m.record(Entry::Score, Duration::from_micros(700), None);
        m.record(
            Entry::Score,
            Duration::from_millis(2),
            Some(ErrorCode::BufferSize),
        );
        let ok: Result<()> = m.observe(Entry::ScoreBatch, || Ok(()));
        assert!(ok.is_ok());
        let err: Result<()> = m.observe(Entry::ScoreBatch, || Err(Error::invalid("no candidates")));
        assert!(err.is_err());

        let s = m.snapshot(Entry::Score);
        assert_eq!(s.calls, 3);
        assert_eq!(s.succeeded(), 2);
        assert_eq!(s.failed(), 1);
        assert_eq!(s.failures[ErrorCode::BufferSize as usize], 1);
        assert_eq!(s.latency_counts[0], 1);
        assert_eq!(s.latency_counts[4], 1);
        assert_eq!(s.latency_sum_ns, 730_000);
        assert_eq!(s.mean_latency(), Some(Duration::from_micros(365)));

        let b = m.snapshot(Entry::ScoreBatch);
        assert_eq!(b.calls, 2);
        assert_eq!(b.failures_with(ErrorCode::InvalidArgument), 1);
        assert_eq!(b.succeeded(), 1);
        assert_eq!(m.snapshot(Entry::ScoreCached), CallStats::default());
    }

    #[test]
    fn a_panicking_call_counts_as_a_panic() {
        let m = Metrics::default();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<()> = m.observe(Entry::Score, || panic!("boom"));
        }));
        assert!(caught.is_err());
        let s = m.snapshot(Entry::Score);
        assert_eq!((s.calls, s.failures_with(ErrorCode::Panic)), (1, 1));
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut s = CallStats::default();
        assert_eq!(s.latency_quantile(0.5), None);
        // 100 calls in (100 µs, 250 µs]: the median is half-way through that bucket.
        s.latency_counts[2] = 100;
        assert_eq!(s.latency_quantile(0.5), Some(Duration::from_nanos(175_000)));
        assert_eq!(s.latency_quantile(1.0), Some(Duration::from_micros(250)));
        // One more call above 1 s: the 100th percentile is reported as 1 s.
        s.latency_counts[LATENCY_BUCKETS - 1] = 1;
        assert_eq!(s.latency_quantile(1.0), Some(Duration::from_secs(1)));
        assert_eq!(s.latency_quantile(0.5), Some(Duration::from_nanos(175_750)));
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        // FIPS 180-2 test vector "abc".
        assert_eq!(
            crate::package::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
