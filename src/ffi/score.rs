//! `atrank_model_score`: one user's raw behaviors and candidate ids in, one score per
//! candidate out.

use std::ffi::c_char;

use super::{atrank_error, atrank_model, opt_str_arg, slice_arg, str_arg, wrap};
use crate::{Behavior, Error, Request, Result};

/// One caller-supplied object feature, e.g. `{"shop", "s12"}`: overrides the package's catalog.
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
    /// `features_len` is 0.
    pub features: *const atrank_feature,
    /// Number of entries in `features`.
    pub features_len: usize,
}

/// The C arguments of one scoring request, as every scoring entry point takes them.
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
        score: impl FnOnce(&Request<'_>) -> Result<Vec<f32>>,
    ) -> Result<()> {
        // SAFETY: NULL (only with length 0) or `behaviors_len` valid structs.
        let raw_behaviors = unsafe { slice_arg(self.behaviors, self.behaviors_len, "behaviors") }?;
        // SAFETY: as above, for the candidate pointer array.
        let raw_candidates =
            unsafe { slice_arg(self.candidates, self.candidates_len, "candidates") }?;
        if self.scores_out.is_null() {
            return Err(Error::NullArgument("scores_out".into()));
        }
        if self.scores_out_len != self.candidates_len {
            return Err(Error::BufferSize(format!(
                "scores_out_len is {} but candidates_len is {}",
                self.scores_out_len, self.candidates_len
            )));
        }
        // Feature pairs first: the behaviors borrow them.
        let mut features: Vec<Vec<(&str, &str)>> = Vec::with_capacity(raw_behaviors.len());
        for (i, b) in raw_behaviors.iter().enumerate() {
            // SAFETY: NULL (only with length 0) or `features_len` valid structs, per
            // `atrank_behavior`.
            let raw = unsafe {
                slice_arg(
                    b.features,
                    b.features_len,
                    &format!("behaviors[{i}].features"),
                )
            }?;
            let mut pairs = Vec::with_capacity(raw.len());
            for (k, f) in raw.iter().enumerate() {
                // SAFETY: each field is NULL or NUL-terminated, per `atrank_feature`.
                let pair = unsafe {
                    (
                        str_arg(f.name, &|| format!("behaviors[{i}].features[{k}].name"))?,
                        str_arg(f.value, &|| format!("behaviors[{i}].features[{k}].value"))?,
                    )
                };
                pairs.push(pair);
            }
            features.push(pairs);
        }
        let mut history = Vec::with_capacity(raw_behaviors.len());
        for (i, (b, pairs)) in raw_behaviors.iter().zip(&features).enumerate() {
            // SAFETY: each string field is NULL or NUL-terminated, per `atrank_behavior`.
            let behavior = unsafe {
                Behavior {
                    group: opt_str_arg(b.group, &|| format!("behaviors[{i}].group"))?,
                    id: str_arg(b.item, &|| format!("behaviors[{i}].item"))?,
                    category: opt_str_arg(b.category, &|| format!("behaviors[{i}].category"))?,
                    features: pairs,
                    action: opt_str_arg(b.action, &|| format!("behaviors[{i}].action"))?,
                    timestamp: b.timestamp,
                }
            };
            history.push(behavior);
        }
        let mut ids = Vec::with_capacity(raw_candidates.len());
        for (i, &c) in raw_candidates.iter().enumerate() {
            // SAFETY: each candidate is NULL or NUL-terminated, per the contract.
            ids.push(unsafe { str_arg(c, &|| format!("candidates[{i}]")) }?);
        }
        let scores = score(&Request {
            behaviors: &history,
            candidates: &ids,
            request_time: self.request_time,
        })?;
        if scores.len() != self.scores_out_len {
            return Err(Error::Backend(format!(
                "graph returned {} scores for {} candidates",
                scores.len(),
                self.scores_out_len
            )));
        }
        // SAFETY: `scores_out` is non-NULL with room for `scores_out_len` floats (checked equal
        // to `scores.len()`), per the contract; it cannot overlap our freshly allocated Vec.
        unsafe { std::ptr::copy_nonoverlapping(scores.as_ptr(), self.scores_out, scores.len()) };
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
/// Thread safety: may be called from any number of threads at once on the same model. Nothing
/// passed in is retained.
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
    wrap(|| {
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
        unsafe { req.run(|r| model.score(r)) }
    })
}

/// Like `atrank_model_score`, but reuses the encoding of `user_key`'s history (NUL-terminated
/// UTF-8, any string the caller uses to name a user) when the same user comes back with the
/// same behaviors and request time. Scores equal `atrank_model_score`'s. Needs a package with
/// the split encoder/scorer graphs and a cache capacity above 0 (the default is 1024); without
/// them it is exactly `atrank_model_score`. NULL `user_key`: `ATRANK_ERROR_NULL_ARGUMENT`.
///
/// Thread safety: may be called from any number of threads at once on the same model (the
/// cache has its own lock).
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
    wrap(|| {
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
        unsafe { req.run(|r| model.score_cached(key, r)) }
    })
}
