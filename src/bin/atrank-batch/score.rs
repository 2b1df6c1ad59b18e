//! Scoring one chunk of rows on the shared model: one batched graph run, and when that fails
//! (or yields a non-finite score), row by row, so that only the bad rows carry an error.

use atrank::{Behavior, Model, Request};

use crate::input::{OwnedRequest, Row};
use crate::owned::Borrowed;

/// A row's result: its scores (one per candidate, in order) or why it has none.
pub type Outcome = Result<Vec<f32>, String>;

fn finite(scores: &[f32]) -> Result<(), String> {
    match scores.iter().position(|s| !s.is_finite()) {
        None => Ok(()),
        Some(k) => Err(format!(
            "the model returned {} for candidate {k}",
            scores[k]
        )),
    }
}

/// Runs a model call, turning its error, or a panic (a bug in atrank), into a message.
fn guarded<T>(f: impl FnOnce() -> atrank::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("internal error: atrank panicked on this request (please report it)".into()),
    }
}

/// Scores `rows`; the outcomes are in the rows' order.
pub fn score_chunk(model: &Model, rows: &[Row]) -> Vec<Outcome> {
    let ok: Vec<(usize, &OwnedRequest)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.request.as_ref().ok().map(|q| (i, q)))
        .collect();
    let borrowed: Vec<Borrowed<'_>> = ok.iter().map(|(_, q)| Borrowed::new(q)).collect();
    let behaviors: Vec<Vec<Behavior<'_>>> = ok
        .iter()
        .zip(&borrowed)
        .map(|((_, q), b)| b.behaviors(q))
        .collect();
    let requests: Vec<Request<'_>> = ok
        .iter()
        .zip(&borrowed)
        .zip(&behaviors)
        .map(|(((_, q), b), h)| Request {
            behaviors: h,
            candidates: &b.candidates,
            request_time: q.request_time,
        })
        .collect();

    let mut out: Vec<Outcome> = rows
        .iter()
        .map(|r| match &r.request {
            Ok(_) => Err(String::new()),
            Err(e) => Err(e.clone()),
        })
        .collect();
    if requests.is_empty() {
        return out;
    }
    let alone = |r: &Request<'_>| -> Outcome {
        let s = guarded(|| model.score(r))?;
        finite(&s)?;
        Ok(s)
    };
    match guarded(|| model.score_batch(&requests)) {
        Ok(batch) if batch.len() == requests.len() => {
            for (((i, _), r), scores) in ok.iter().zip(&requests).zip(batch) {
                out[*i] = match finite(&scores) {
                    Ok(()) => Ok(scores),
                    // A non-finite score in a batch: score the row alone to tell a bad row
                    // from a batching effect.
                    Err(_) => alone(r),
                };
            }
        }
        _ => {
            for ((i, _), r) in ok.iter().zip(&requests) {
                out[*i] = alone(r);
            }
        }
    }
    out
}
