//! `atrank_handle`: a model slot that can be reloaded while other threads score through it.

use std::ffi::c_char;
use std::sync::Arc;

use super::builder::atrank_model_builder;
use super::model::atrank_model;
use super::score::{atrank_behavior, CRequest};
use super::{atrank_error, wrap};
use crate::metrics::Entry;
use crate::{Error, Model, ModelHandle, Result};

/// A hot-swappable model. Scoring through it uses the model current when the call starts;
/// `atrank_handle_reload` swaps a new one in atomically, and a failed reload leaves the old
/// model serving.
///
/// Thread safety: every function taking a `const atrank_handle *` may be called from any number
/// of threads at once, reloads included. Ownership: created by `atrank_handle_new`, freed once
/// with `atrank_handle_free` after all calls using it have returned.
pub struct atrank_handle {
    _private: [u8; 0],
}

/// # Safety
/// `ptr` must be NULL or a live handle from `atrank_handle_new`.
unsafe fn as_handle<'a>(ptr: *const atrank_handle) -> Result<&'a ModelHandle> {
    // SAFETY: non-NULL handles are `Box<ModelHandle>` pointers, alive until freed.
    unsafe { ptr.cast::<ModelHandle>().as_ref() }
        .ok_or_else(|| Error::NullArgument("handle".into()))
}

/// # Safety
/// `ptr` must be NULL or a live model handle from this library.
unsafe fn share(ptr: *const atrank_model) -> Result<Arc<Model>> {
    if ptr.is_null() {
        return Err(Error::NullArgument("model".into()));
    }
    let raw = ptr.cast::<Model>();
    // SAFETY: `raw` came from `Arc::into_raw` and is alive (the caller still owns its
    // reference); taking one more strong reference for ourselves is sound.
    unsafe {
        Arc::increment_strong_count(raw);
        Ok(Arc::from_raw(raw))
    }
}

/// Creates a handle serving `model` (generation 1).
///
/// Ownership: the handle takes its own reference to `model`: the caller still owns `model` and
/// frees it as usual. On success the caller owns the handle written to `*handle_out` and frees it
/// with `atrank_handle_free`; on error `*handle_out` is untouched. NULL: `model` or `handle_out`
/// NULL gives `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_handle_new(
    model: *const atrank_model,
    handle_out: *mut *mut atrank_handle,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live model, per the contract.
        let model = unsafe { share(model) }?;
        if handle_out.is_null() {
            return Err(Error::NullArgument("handle_out".into()));
        }
        let h = Box::into_raw(Box::new(ModelHandle::from_arc(model)));
        // SAFETY: non-NULL and writable per the contract.
        unsafe { handle_out.write(h.cast()) };
        Ok(())
    })
}

/// Builds a new model from `builder` and swaps it in atomically: calls already running finish
/// on the old model, later ones use the new one. On error the current model keeps serving and the
/// error says why the new one was refused. On success writes the new generation to
/// `*generation_out` if it is not NULL.
///
/// Ownership: always consumes `builder` (on success and on error); the handle owns the new model.
/// NULL: `handle` or `builder` NULL gives `ATRANK_ERROR_NULL_ARGUMENT` (a non-NULL builder is
/// still consumed); `generation_out` may be NULL. Thread safety: thread-safe (concurrent with
/// scoring and with other reloads on the same handle; concurrent reloads apply one after the
/// other).
#[no_mangle]
pub extern "C" fn atrank_handle_reload(
    handle: *const atrank_handle,
    builder: *mut atrank_model_builder,
    generation_out: *mut u64,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let h = match unsafe { as_handle(handle) } {
            Ok(h) => h,
            Err(e) => {
                // Checked before any loading; the builder is still consumed, as documented.
                super::builder::atrank_model_builder_free(builder);
                return Err(e);
            }
        };
        // SAFETY: NULL or a live builder, consumed here, per the contract.
        let model = unsafe { super::builder::build_model(builder) }?;
        let generation = h.swap_arc(Arc::new(model))?;
        if !generation_out.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { generation_out.write(generation) };
        }
        Ok(())
    })
}

/// Writes a new reference to the model serving now to `*model_out`; useful to score several
/// calls on one consistent model.
///
/// Ownership: the caller owns the reference written to `*model_out` and frees it with
/// `atrank_model_free`; it stays valid after later reloads. NULL: `handle` or `model_out` NULL
/// gives `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_handle_current(
    handle: *const atrank_handle,
    model_out: *mut *const atrank_model,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let h = unsafe { as_handle(handle) }?;
        if model_out.is_null() {
            return Err(Error::NullArgument("model_out".into()));
        }
        let m = h.current()?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { model_out.write(atrank_model::into_raw(m)) };
        Ok(())
    })
}

/// The model serving now and its generation, read together: a reload between the two cannot
/// mismatch them (as separate `atrank_handle_current` and `atrank_handle_generation` calls
/// could). Score on `*model_out` to report which generation answered a request.
///
/// Ownership: the caller owns the reference written to `*model_out` and frees it with
/// `atrank_model_free`. NULL: `handle`, `model_out` or `generation_out` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`, and nothing is written. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_handle_snapshot(
    handle: *const atrank_handle,
    model_out: *mut *const atrank_model,
    generation_out: *mut u64,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let h = unsafe { as_handle(handle) }?;
        if model_out.is_null() {
            return Err(Error::NullArgument("model_out".into()));
        }
        if generation_out.is_null() {
            return Err(Error::NullArgument("generation_out".into()));
        }
        let (m, generation) = h.snapshot()?;
        // SAFETY: both non-NULL and writable per the contract.
        unsafe {
            generation_out.write(generation);
            model_out.write(atrank_model::into_raw(m));
        }
        Ok(())
    })
}

/// How many models the handle has served (1 + successful reloads), to `*generation_out`.
///
/// Ownership: borrows `handle`. NULL: `handle` or `generation_out` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_handle_generation(
    handle: *const atrank_handle,
    generation_out: *mut u64,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let h = unsafe { as_handle(handle) }?;
        if generation_out.is_null() {
            return Err(Error::NullArgument("generation_out".into()));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { generation_out.write(h.generation()) };
        Ok(())
    })
}

/// `atrank_model_score` on the handle's current model (same arguments and errors).
///
/// Ownership: as for `atrank_model_score` (nothing retained; the caller owns the error).
/// NULL: `handle` NULL gives `ATRANK_ERROR_NULL_ARGUMENT`; the other arguments as for
/// `atrank_model_score`. Thread safety: thread-safe (concurrent with reloads).
#[no_mangle]
pub extern "C" fn atrank_handle_score(
    handle: *const atrank_handle,
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
        let h = unsafe { as_handle(handle) }?;
        let model = h.current()?;
        let req = CRequest {
            behaviors,
            behaviors_len,
            candidates,
            candidates_len,
            request_time,
            scores_out,
            scores_out_len,
        };
        // The model counts the whole call, as `atrank_model_score` does.
        model.observe(Entry::Score, || {
            // SAFETY: the pointers follow `atrank_model_score`'s documented contract.
            unsafe { req.run(&model.spec().limits, |r| model.score_uncounted(r)) }
        })
    })
}

/// Frees a handle; the models it served are freed when no one else holds them.
///
/// Ownership: takes `handle` back; references from `atrank_handle_current` stay valid. NULL:
/// accepted and ignored. Thread safety: exclusive (call it once, after every other call using the
/// handle has returned).
#[no_mangle]
pub extern "C" fn atrank_handle_free(handle: *mut atrank_handle) {
    super::guard((), || {
        if !handle.is_null() {
            // SAFETY: a live handle from `atrank_handle_new`, freed once.
            drop(unsafe { Box::from_raw(handle.cast::<ModelHandle>()) });
        }
    })
}
