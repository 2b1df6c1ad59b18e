//! `atrank_model_score`: one user's raw behaviors and candidate ids in, one score per
//! candidate out.

use std::ffi::c_char;

use super::stats::observed;
use super::{atrank_error, atrank_model, opt_str_arg, slice_arg, str_arg};
use crate::metrics::Entry;
use crate::spec::Limits;
use crate::{Behavior, Error, Request, Result};

/// The most caller-supplied features one behavior may carry (`atrank_behavior.features_len`).
pub const ATRANK_MAX_FEATURES: usize = 64;

/// One caller-supplied object feature, e.g. `{"shop", "s12"}`: overrides the package's catalog.
///
/// Ownership and thread safety: plain data owned by the caller; atrank only reads it during a
/// call, so the same array may be passed to calls running on several threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct atrank_feature {
    /// Feature name (required, non-NULL), as in the package spec (e.g. "category", "shop").
    pub name: *const c_char,
    /// Raw feature value (required, non-NULL).
    pub value: *const c_char,
}

/// One raw behavior of a user. All strings are NUL-terminated UTF-8, borrowed for the
/// duration of the call only (atrank keeps no pointer after it returns). Zero-initialise the
/// struct (`= {0}`, `calloc`) and set the fields you use: the later fields are optional.
///
/// Ownership and thread safety: plain data owned by the caller; atrank only reads it during a
/// call, so the same array may be passed to calls running on several threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct atrank_behavior {
    /// Raw object id (required, non-NULL): an item id in single-group models. Ids the model
    /// never saw are scored as "unknown".
    pub item: *const c_char,
    /// Raw category, or NULL to take the item's category from the package's catalog.
    pub category: *const c_char,
    /// Raw action name (e.g. "like"), or NULL for "unknown action".
    pub action: *const c_char,
    /// Unix time of the behavior, in seconds.
    pub timestamp: i64,
    /// The behavior group (object type, e.g. "query"), or NULL for the model's target group.
    pub group: *const c_char,
    /// Caller-supplied features of the object, overriding the catalog; NULL when
    /// `features_len` is 0. Each name must be a feature of the behavior's group (other than
    /// its id), else the call fails with `ATRANK_ERROR_INVALID_ARGUMENT`.
    pub features: *const atrank_feature,
    /// Number of entries in `features`.
    pub features_len: usize,
}

/// One request's strings, checked and borrowed from C memory; [`Decoded::behaviors`] turns it
/// into the `Behavior`s of a [`Request`] (two steps, because behaviors borrow their features).
pub(crate) struct Decoded<'a> {
    /// The behaviors, with no features yet (they are in `features`).
    fields: Vec<Behavior<'a>>,
    features: Vec<Vec<(&'a str, &'a str)>>,
    candidates: Vec<&'a str>,
    request_time: i64,
}

impl<'a> Decoded<'a> {
    /// Checks and borrows one request's arrays and strings; `at` prefixes the argument names in
    /// error messages (e.g. `requests[2].`).
    ///
    /// # Safety
    /// `behaviors` / `candidates` must be NULL or point to `*_len` valid elements whose string
    /// fields are NULL or NUL-terminated, all valid for `'a` (the entry points' contract).
    pub(crate) unsafe fn new(
        at: &str,
        limits: &Limits,
        behaviors: *const atrank_behavior,
        behaviors_len: usize,
        candidates: *const *const c_char,
        candidates_len: usize,
        request_time: i64,
    ) -> Result<Self> {
        // Lengths are checked against the model's limits before anything they size is touched
        // or allocated.
        if behaviors_len > limits.max_behaviors {
            return Err(Error::invalid(format!(
                "{at}behaviors_len is {behaviors_len}, more than this model's limit of {}",
                limits.max_behaviors
            )));
        }
        if candidates_len > limits.max_candidates {
            return Err(Error::invalid(format!(
                "{at}candidates_len is {candidates_len}, more than this model's limit of {}",
                limits.max_candidates
            )));
        }
        // SAFETY: NULL (only with length 0) or `behaviors_len` valid structs.
        let raw_behaviors =
            unsafe { slice_arg(behaviors, behaviors_len, &format!("{at}behaviors")) }?;
        // SAFETY: as above, for the candidate pointer array.
        let raw_candidates =
            unsafe { slice_arg(candidates, candidates_len, &format!("{at}candidates")) }?;
        let mut fields = Vec::with_capacity(raw_behaviors.len());
        let mut features = Vec::with_capacity(raw_behaviors.len());
        for (i, b) in raw_behaviors.iter().enumerate() {
            let name = |field: &str| format!("{at}behaviors[{i}].{field}");
            if b.features_len > ATRANK_MAX_FEATURES {
                return Err(Error::invalid(format!(
                    "{} is {}, more than ATRANK_MAX_FEATURES ({ATRANK_MAX_FEATURES})",
                    name("features_len"),
                    b.features_len
                )));
            }
            // SAFETY: NULL (only with length 0) or `features_len` valid structs, per
            // `atrank_behavior`.
            let raw = unsafe { slice_arg(b.features, b.features_len, &name("features")) }?;
            let mut pairs = Vec::with_capacity(raw.len());
            for (k, f) in raw.iter().enumerate() {
                // SAFETY: each field is NULL or NUL-terminated, per `atrank_feature`.
                let pair = unsafe {
                    (
                        str_arg(f.name, &|| name(&format!("features[{k}].name")))?,
                        str_arg(f.value, &|| name(&format!("features[{k}].value")))?,
                    )
                };
                pairs.push(pair);
            }
            features.push(pairs);
            // SAFETY: each string field is NULL or NUL-terminated, per `atrank_behavior`.
            let f = unsafe {
                Behavior {
                    group: opt_str_arg(b.group, &|| name("group"))?,
                    id: str_arg(b.item, &|| name("item"))?,
                    category: opt_str_arg(b.category, &|| name("category"))?,
                    features: &[],
                    action: opt_str_arg(b.action, &|| name("action"))?,
                    timestamp: b.timestamp,
                }
            };
            fields.push(f);
        }
        let mut ids = Vec::with_capacity(raw_candidates.len());
        for (i, &c) in raw_candidates.iter().enumerate() {
            // SAFETY: each candidate is NULL or NUL-terminated, per the contract.
            ids.push(unsafe { str_arg(c, &|| format!("{at}candidates[{i}]")) }?);
        }
        Ok(Decoded {
            fields,
            features,
            candidates: ids,
            request_time,
        })
    }

    /// The request's behaviors, borrowing this request's strings and feature pairs.
    pub(crate) fn behaviors(&self) -> Vec<Behavior<'_>> {
        self.fields
            .iter()
            .zip(&self.features)
            .map(|(b, pairs)| Behavior {
                features: pairs,
                ..*b
            })
            .collect()
    }

    /// The request over `behaviors` (from [`Decoded::behaviors`]).
    pub(crate) fn request<'s>(&'s self, behaviors: &'s [Behavior<'s>]) -> Request<'s> {
        Request {
            behaviors,
            candidates: &self.candidates,
            request_time: self.request_time,
        }
    }
}

/// Checks an output buffer: non-NULL, with exactly `expected` floats.
fn check_out(
    scores_out: *mut f32,
    scores_out_len: usize,
    expected: usize,
    what: &str,
) -> Result<()> {
    if scores_out.is_null() {
        return Err(Error::NullArgument("scores_out".into()));
    }
    if !scores_out.is_aligned() {
        return Err(Error::invalid("scores_out is not aligned for float"));
    }
    if scores_out_len != expected {
        return Err(Error::BufferSize(format!(
            "scores_out_len is {scores_out_len} but {what} is {expected}"
        )));
    }
    Ok(())
}

/// Copies `scores` into the caller's buffer (checked by [`check_out`] for `scores.len()`).
///
/// # Safety
/// `scores_out` must have room for `scores.len()` floats.
unsafe fn write_out(scores: &[f32], scores_out: *mut f32) {
    // SAFETY: room for `scores.len()` floats per the contract; it cannot overlap our own Vec.
    unsafe { std::ptr::copy_nonoverlapping(scores.as_ptr(), scores_out, scores.len()) };
}

/// The C arguments of one scoring request, as every single-request entry point takes them.
pub(crate) struct CRequest {
    pub behaviors: *const atrank_behavior,
    pub behaviors_len: usize,
    pub candidates: *const *const c_char,
    pub candidates_len: usize,
    pub request_time: i64,
    pub scores_out: *mut f32,
    pub scores_out_len: usize,
}

impl CRequest {
    /// Checks and converts the arguments, runs `score` on the request, and writes the scores
    /// to `scores_out` (only on success).
    ///
    /// # Safety
    /// The pointers must satisfy `atrank_model_score`'s documented contract.
    pub(crate) unsafe fn run(
        &self,
        limits: &Limits,
        score: impl FnOnce(&Request<'_>) -> Result<Vec<f32>>,
    ) -> Result<()> {
        // SAFETY: forwarded contract.
        let decoded = unsafe {
            Decoded::new(
                "",
                limits,
                self.behaviors,
                self.behaviors_len,
                self.candidates,
                self.candidates_len,
                self.request_time,
            )
        }?;
        check_out(
            self.scores_out,
            self.scores_out_len,
            self.candidates_len,
            "candidates_len",
        )?;
        let behaviors = decoded.behaviors();
        let scores = score(&decoded.request(&behaviors))?;
        if scores.len() != self.scores_out_len {
            return Err(Error::Backend(format!(
                "graph returned {} scores for {} candidates",
                scores.len(),
                self.scores_out_len
            )));
        }
        // SAFETY: checked above: room for exactly `scores.len()` floats.
        unsafe { write_out(&scores, self.scores_out) };
        Ok(())
    }
}

/// Scores `candidates_len` candidate item ids for one user with `behaviors_len` behaviors,
/// as of `request_time` (unix seconds). The history is encoded once for all candidates.
///
/// `behaviors` may be NULL only when `behaviors_len` is 0 (an empty history is valid).
/// `candidates` (array of NUL-terminated UTF-8 ids) must hold 1 .. the model's maximum
/// candidates. `scores_out` must have room for exactly `scores_out_len == candidates_len`
/// floats; on success it receives one logit per candidate, in the candidates' order (higher
/// ranks first). On error nothing is written to `scores_out`.
///
/// Errors: NULL pointers (`ATRANK_ERROR_NULL_ARGUMENT`, naming e.g. `behaviors[3].item`),
/// invalid UTF-8 (`ATRANK_ERROR_INVALID_UTF8`), empty or too many candidates, misaligned
/// arrays, a group the model does not have (`ATRANK_ERROR_INVALID_ARGUMENT`),
/// `scores_out_len != candidates_len` (`ATRANK_ERROR_BUFFER_SIZE`). The caller owns the
/// returned error.
///
/// Ownership: borrows everything passed in for the call only (nothing is retained); the caller
/// owns the returned error. NULL: see Errors. Thread safety: thread-safe (any number of
/// threads at once on the same model).
#[no_mangle]
pub extern "C" fn atrank_model_score(
    model: *const atrank_model,
    behaviors: *const atrank_behavior,
    behaviors_len: usize,
    candidates: *const *const c_char,
    candidates_len: usize,
    request_time: i64,
    scores_out: *mut f32,
    scores_out_len: usize,
) -> *mut atrank_error {
    observed(model, Entry::Score, || {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        let req = CRequest {
            behaviors,
            behaviors_len,
            candidates,
            candidates_len,
            request_time,
            scores_out,
            scores_out_len,
        };
        // SAFETY: the pointers follow this function's documented contract.
        unsafe { req.run(&model.spec().limits, |r| model.score_uncounted(r)) }
    })
}

/// Like `atrank_model_score`, but reuses the encoding of `user_key`'s history (NUL-terminated
/// UTF-8, any string the caller uses to name a user) when the same user comes back with the
/// same behaviors and request time. Scores equal `atrank_model_score`'s. Needs a package with
/// the split encoder/scorer graphs and a cache capacity above 0 (the default is 1024); without
/// them it is exactly `atrank_model_score`.
///
/// Ownership: `user_key` is copied into the cache; nothing else passed in is retained; the
/// caller owns the returned error. NULL: `user_key` NULL gives `ATRANK_ERROR_NULL_ARGUMENT`;
/// the other arguments as for `atrank_model_score`. Thread safety: thread-safe (any number of
/// threads at once on the same model; the cache has its own lock).
#[no_mangle]
pub extern "C" fn atrank_model_score_cached(
    model: *const atrank_model,
    user_key: *const c_char,
    behaviors: *const atrank_behavior,
    behaviors_len: usize,
    candidates: *const *const c_char,
    candidates_len: usize,
    request_time: i64,
    scores_out: *mut f32,
    scores_out_len: usize,
) -> *mut atrank_error {
    observed(model, Entry::ScoreCached, || {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        // SAFETY: NULL or NUL-terminated, per the contract.
        let key = unsafe { str_arg(user_key, &|| "user_key".into()) }?;
        let req = CRequest {
            behaviors,
            behaviors_len,
            candidates,
            candidates_len,
            request_time,
            scores_out,
            scores_out_len,
        };
        // SAFETY: the pointers follow this function's documented contract.
        unsafe {
            req.run(&model.spec().limits, |r| {
                model.score_cached_uncounted(key, r)
            })
        }
    })
}

/// The most requests one `atrank_model_score_batch` call accepts: a bound on the padded batch
/// tensors (each request is padded to the batch's longest history and candidate list).
pub const ATRANK_MAX_BATCH_REQUESTS: usize = 4096;

/// One user's request inside a batch: the same arguments `atrank_model_score` takes, with the
/// same contract (strings and arrays are borrowed for the duration of the call only).
/// Zero-initialise it and set every field.
///
/// Ownership and thread safety: plain data owned by the caller; atrank only reads it during a
/// call, so the same array may be passed to calls running on several threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct atrank_request {
    /// The user's behaviors; NULL only when `behaviors_len` is 0 (an empty history is valid).
    pub behaviors: *const atrank_behavior,
    /// Number of entries in `behaviors`.
    pub behaviors_len: usize,
    /// Candidate ids (NUL-terminated UTF-8), 1 .. the model's maximum candidates.
    pub candidates: *const *const c_char,
    /// Number of entries in `candidates`.
    pub candidates_len: usize,
    /// Unix time of the request, in seconds.
    pub request_time: i64,
}

/// Scores `requests_len` users in one run of the graph (one batch, padded): better throughput
/// than one `atrank_model_score` call per user when many requests arrive together, e.g. in
/// offline scoring. Request `i`'s scores are written to `scores_out` at the offset equal to the
/// sum of the earlier requests' `candidates_len`, in their candidates' order, so `scores_out`
/// must hold exactly `scores_out_len ==` the sum of all `candidates_len` floats. Scores equal
/// `atrank_model_score`'s for each request alone up to float rounding (a batch runs other
/// tensor shapes, so kernels sum in another order). Requests of similar sizes run together, so
/// the work is bounded by what was passed: one long request does not pad the others.
///
/// All or nothing: if any request is invalid, the call fails with the error of the first
/// invalid one, its message naming the request (`requests[2].behaviors[0].item is NULL`,
/// `requests[2]: behaviors[0].group "x" is not a group of this model`), and nothing is
/// written to `scores_out`. Callers that need per-request errors score the failed
/// batch's requests one by one.
///
/// NULL: `model`, `requests` or `scores_out` NULL gives `ATRANK_ERROR_NULL_ARGUMENT`.
/// `requests_len` must be 1 ..= `ATRANK_MAX_BATCH_REQUESTS` (`ATRANK_ERROR_INVALID_ARGUMENT`);
/// a wrong `scores_out_len` gives `ATRANK_ERROR_BUFFER_SIZE`. Ownership: nothing passed in is
/// retained; the caller owns the returned error.
///
/// Thread safety: thread-safe (any number of threads at once on the same model).
#[no_mangle]
pub extern "C" fn atrank_model_score_batch(
    model: *const atrank_model,
    requests: *const atrank_request,
    requests_len: usize,
    scores_out: *mut f32,
    scores_out_len: usize,
) -> *mut atrank_error {
    observed(model, Entry::ScoreBatch, || {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        if requests.is_null() {
            return Err(Error::NullArgument("requests".into()));
        }
        if requests_len == 0 || requests_len > ATRANK_MAX_BATCH_REQUESTS {
            return Err(Error::invalid(format!(
                "requests_len is {requests_len}; it must be 1..={ATRANK_MAX_BATCH_REQUESTS}"
            )));
        }
        // SAFETY: non-NULL with `requests_len` valid structs, per the contract.
        let raw = unsafe { slice_arg(requests, requests_len, "requests") }?;
        let mut decoded = Vec::with_capacity(raw.len());
        let mut total = 0usize;
        for (i, r) in raw.iter().enumerate() {
            // SAFETY: each request follows `atrank_model_score`'s contract.
            let d = unsafe {
                Decoded::new(
                    &format!("requests[{i}]."),
                    &model.spec().limits,
                    r.behaviors,
                    r.behaviors_len,
                    r.candidates,
                    r.candidates_len,
                    r.request_time,
                )
            }?;
            total = total.saturating_add(r.candidates_len);
            decoded.push(d);
        }
        check_out(
            scores_out,
            scores_out_len,
            total,
            "the sum of requests[].candidates_len",
        )?;
        let behaviors: Vec<Vec<Behavior<'_>>> = decoded.iter().map(Decoded::behaviors).collect();
        let batch: Vec<Request<'_>> = decoded
            .iter()
            .zip(&behaviors)
            .map(|(d, b)| d.request(b))
            .collect();
        // The preprocessor names the request in a batch of two or more; name it in a batch of
        // one too, so every batch error says which request it is about.
        let scores: Vec<f32> = model
            .score_batch_uncounted(&batch)
            .map_err(|e| {
                if batch.len() == 1 {
                    crate::preprocess::prefix(e, "requests[0]: ")
                } else {
                    e
                }
            })?
            .concat();
        if scores.len() != total {
            return Err(Error::Backend(format!(
                "graph returned {} scores for {total} candidates",
                scores.len()
            )));
        }
        // SAFETY: checked above: room for exactly `total == scores.len()` floats.
        unsafe { write_out(&scores, scores_out) };
        Ok(())
    })
}
