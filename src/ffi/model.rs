//! `atrank_model`: load, inspect and free a model package.

use std::ffi::c_char;
use std::sync::Arc;

use super::{atrank_error, str_arg, wrap};
use crate::{Backend, Error, Model, Result};

/// Selects the inference engine (`atrank_model_load`).
pub type atrank_backend = u32;
/// ONNX Runtime on the CPU. The shared library is opened at the first ORT load from
/// `$ATRANK_ORT_LIB`, else `$ORT_DYLIB_PATH`, else `libonnxruntime.so` on the loader's path.
pub const ATRANK_BACKEND_ORT: atrank_backend = 0;
/// tract, pure Rust, CPU: needs no other library.
pub const ATRANK_BACKEND_TRACT: atrank_backend = 1;

/// A loaded model package: spec, vocabularies, catalog and the graph on one backend.
///
/// Thread safety: immutable once loaded; every function taking a `const atrank_model *` may be
/// called from any number of threads at once. Ownership: created by `atrank_model_load`, freed
/// once with `atrank_model_free` after all calls using it have returned.
pub struct atrank_model {
    _private: [u8; 0],
}

impl atrank_model {
    pub(crate) fn into_raw(model: Arc<Model>) -> *const atrank_model {
        Arc::into_raw(model).cast()
    }

    /// Borrows the model behind a handle.
    ///
    /// # Safety
    /// `ptr` must be NULL or a handle from `atrank_model_load` that has not been freed.
    pub(crate) unsafe fn as_model<'a>(ptr: *const atrank_model, what: &str) -> Result<&'a Model> {
        // SAFETY: non-NULL handles are `Arc<Model>` pointers made by `into_raw`, alive until
        // `atrank_model_free`, per the caller's contract.
        unsafe { ptr.cast::<Model>().as_ref() }.ok_or_else(|| Error::NullArgument(what.into()))
    }
}

pub(crate) fn backend_from_c(backend: atrank_backend) -> Result<Backend> {
    match backend {
        ATRANK_BACKEND_ORT => Ok(Backend::Ort),
        ATRANK_BACKEND_TRACT => Ok(Backend::Tract),
        other => Err(Error::invalid(format!(
            "backend {other} is not an atrank_backend (ATRANK_BACKEND_ORT = 0, ATRANK_BACKEND_TRACT = 1)"
        ))),
    }
}

/// Loads the model package in directory `package_dir` (NUL-terminated UTF-8 path) and prepares
/// its graph on `backend` (`ATRANK_BACKEND_*`), with the builder's defaults otherwise.
///
/// Ownership: on success the caller owns the model written to `*model_out` and frees it with
/// `atrank_model_free`; on error `*model_out` is untouched. `package_dir` is not retained.
/// NULL: `package_dir` or `model_out` NULL gives `ATRANK_ERROR_NULL_ARGUMENT`.
/// Thread safety: thread-safe (loads may run at once from several threads).
#[no_mangle]
pub extern "C" fn atrank_model_load(
    package_dir: *const c_char,
    backend: atrank_backend,
    model_out: *mut *const atrank_model,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a NUL-terminated string, per the documented contract.
        let dir = unsafe { str_arg(package_dir, &|| "package_dir".into()) }?;
        if model_out.is_null() {
            return Err(Error::NullArgument("model_out".into()));
        }
        let backend = backend_from_c(backend)?;
        let model = Arc::new(Model::load(dir, backend)?);
        // SAFETY: `model_out` is non-NULL and points to writable storage per the contract.
        unsafe { model_out.write(atrank_model::into_raw(model)) };
        Ok(())
    })
}

/// The backend serving `model` (`ATRANK_BACKEND_*`), written to `*backend_out` on success.
///
/// Ownership: borrows `model`. NULL: `model` or `backend_out` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`, `*backend_out` untouched. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_model_backend(
    model: *const atrank_model,
    backend_out: *mut atrank_backend,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        if backend_out.is_null() {
            return Err(Error::NullArgument("backend_out".into()));
        }
        let value = match model.backend() {
            Backend::Ort => ATRANK_BACKEND_ORT,
            Backend::Tract => ATRANK_BACKEND_TRACT,
        };
        // SAFETY: non-NULL and writable per the contract.
        unsafe { backend_out.write(value) };
        Ok(())
    })
}

/// The most candidates one scoring call accepts for `model` (the package's
/// `limits.max_candidates`), written to `*max_out` on success: callers with more candidates
/// score them in chunks of this size.
///
/// Ownership: borrows `model`. NULL: `model` or `max_out` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`, `*max_out` untouched. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_model_max_candidates(
    model: *const atrank_model,
    max_out: *mut usize,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        if max_out.is_null() {
            return Err(Error::NullArgument("max_out".into()));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { max_out.write(model.max_candidates()) };
        Ok(())
    })
}

/// Frees a model reference.
///
/// Ownership: takes `model` back; handles and other references (`atrank_handle_current`) keep
/// their own. NULL: accepted and ignored. Thread safety: exclusive (call it exactly once per
/// reference, after every other call using it has returned).
#[no_mangle]
pub extern "C" fn atrank_model_free(model: *const atrank_model) {
    super::guard((), || {
        if !model.is_null() {
            // SAFETY: a non-NULL handle came from `Arc::into_raw` in `atrank_model_load` and is
            // released only once, per the contract.
            drop(unsafe { Arc::from_raw(model.cast::<Model>()) });
        }
    })
}
