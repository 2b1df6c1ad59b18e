//! `atrank_model_builder`: load a model with options (backend, threads, GPU policy, ONNX
//! Runtime library, encoding-cache size), and `atrank_model_serving`.

use std::ffi::c_char;
use std::path::PathBuf;
use std::sync::Arc;

use super::model::{atrank_backend, atrank_model, backend_from_c};
use super::{atrank_error, str_arg, wrap};
use crate::package::VerifyHashes;
use crate::{Error, GpuPolicy, LoadOptions, Model, Result, Serving};

/// GPU use (`atrank_model_builder_set_gpu_policy`).
pub type atrank_gpu_policy = u32;
/// CPU only (the default).
pub const ATRANK_GPU_OFF: atrank_gpu_policy = 0;
/// ONNX Runtime's CUDA execution provider or an error (`ATRANK_ERROR_BACKEND_UNAVAILABLE`).
pub const ATRANK_GPU_STRICT: atrank_gpu_policy = 1;
/// CUDA when it can be registered, else the CPU; `atrank_model_serving` says which.
pub const ATRANK_GPU_PERMISSIVE: atrank_gpu_policy = 2;

/// Which memory-mapped package files have their SHA-256 checked at load
/// (`atrank_model_builder_set_verify_hashes`); sizes are always checked.
pub type atrank_verify_hashes = u32;
/// Files of at most 64 MiB (the default); larger ones are bounds-checked on every read.
pub const ATRANK_VERIFY_HASHES_SMALL: atrank_verify_hashes = 0;
/// Every file, whatever its size (reads each mapped file once at load).
pub const ATRANK_VERIFY_HASHES_ALL: atrank_verify_hashes = 1;

/// Which of atrank's own tract kernels replace tract's nodes at load
/// (`atrank_model_builder_set_tract_fusion`): a bitwise OR of the flags below.
pub type atrank_tract_fusion = u32;
/// Neither: tract's own nodes run everything.
pub const ATRANK_TRACT_FUSE_NONE: atrank_tract_fusion = 0;
/// The attention core (scores, masked softmax, weighted sum) as one kernel.
pub const ATRANK_TRACT_FUSE_ATTENTION: atrank_tract_fusion = 1;
/// Each layer normalisation (with the residual sum that feeds it) as one kernel.
pub const ATRANK_TRACT_FUSE_LAYER_NORM: atrank_tract_fusion = 2;

/// What runs a loaded model's graph (`atrank_model_serving`).
pub type atrank_serving = u32;
/// ONNX Runtime on the CPU.
pub const ATRANK_SERVING_ORT_CPU: atrank_serving = 0;
/// ONNX Runtime with the CUDA execution provider.
pub const ATRANK_SERVING_ORT_CUDA: atrank_serving = 1;
/// tract on the CPU.
pub const ATRANK_SERVING_TRACT: atrank_serving = 2;

/// Options for loading one model package; consumed by `atrank_model_builder_build`.
///
/// Thread safety: a builder may be moved to another thread but must not be used from two
/// threads at once. Ownership: created by `atrank_model_builder_new`; consumed by
/// `atrank_model_builder_build` (also on error) or freed with `atrank_model_builder_free`.
pub struct atrank_model_builder {
    dir: String,
    options: LoadOptions,
}

/// Borrows a builder mutably.
///
/// # Safety
/// `ptr` must be NULL or a live builder from `atrank_model_builder_new`.
unsafe fn builder_mut<'a>(ptr: *mut atrank_model_builder) -> Result<&'a mut atrank_model_builder> {
    // SAFETY: per this function's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| Error::NullArgument("builder".into()))
}

/// Starts a builder for the package in `package_dir` (NUL-terminated UTF-8), with defaults:
/// ONNX Runtime, 1 intra-op thread, CPU only, 1024 cached user encodings, the ONNX Runtime
/// library from `$ATRANK_ORT_LIB` / `$ORT_DYLIB_PATH` / `libonnxruntime.so`.
///
/// Ownership: on success the caller owns the builder written to `*builder_out`, and passes it to
/// `atrank_model_builder_build` / `atrank_handle_reload` (which consume it) or frees it with
/// `atrank_model_builder_free`; `package_dir` is copied. On error `*builder_out` is untouched.
/// NULL: `package_dir` or `builder_out` NULL gives `ATRANK_ERROR_NULL_ARGUMENT`.
/// Thread safety: thread-safe (it touches no shared state).
#[no_mangle]
pub extern "C" fn atrank_model_builder_new(
    package_dir: *const c_char,
    builder_out: *mut *mut atrank_model_builder,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        let dir = unsafe { str_arg(package_dir, &|| "package_dir".into()) }?;
        if builder_out.is_null() {
            return Err(Error::NullArgument("builder_out".into()));
        }
        let builder = Box::new(atrank_model_builder {
            dir: dir.to_owned(),
            options: LoadOptions::new(crate::Backend::Ort),
        });
        // SAFETY: non-NULL and writable per the contract.
        unsafe { builder_out.write(Box::into_raw(builder)) };
        Ok(())
    })
}

/// Sets the backend (`ATRANK_BACKEND_*`). An unknown value: `ATRANK_ERROR_INVALID_ARGUMENT`.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_backend(
    builder: *mut atrank_model_builder,
    backend: atrank_backend,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        b.options.backend = backend_from_c(backend)?;
        Ok(())
    })
}

/// Sets ONNX Runtime's intra-op threads for this model (1 ..= 1024; tract ignores it). Out of
/// range: `ATRANK_ERROR_INVALID_ARGUMENT`.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_intra_threads(
    builder: *mut atrank_model_builder,
    threads: usize,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        if threads == 0 || threads > 1024 {
            return Err(Error::invalid(format!(
                "threads is {threads}; it must be 1..=1024"
            )));
        }
        b.options.intra_threads = threads;
        Ok(())
    })
}

/// Sets the GPU policy (`ATRANK_GPU_*`). An unknown value: `ATRANK_ERROR_INVALID_ARGUMENT`.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_gpu_policy(
    builder: *mut atrank_model_builder,
    policy: atrank_gpu_policy,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        b.options.gpu = match policy {
            ATRANK_GPU_OFF => GpuPolicy::Off,
            ATRANK_GPU_STRICT => GpuPolicy::Strict,
            ATRANK_GPU_PERMISSIVE => GpuPolicy::Permissive,
            other => {
                return Err(Error::invalid(format!(
                    "policy {other} is not an atrank_gpu_policy (ATRANK_GPU_OFF = 0, \
                     ATRANK_GPU_STRICT = 1, ATRANK_GPU_PERMISSIVE = 2)"
                )))
            }
        };
        Ok(())
    })
}

/// Sets which memory-mapped package files (vocabularies, catalogs, external data) have their
/// SHA-256 checked at load (`ATRANK_VERIFY_HASHES_*`; default `ATRANK_VERIFY_HASHES_SMALL`).
/// An unknown value: `ATRANK_ERROR_INVALID_ARGUMENT`.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_verify_hashes(
    builder: *mut atrank_model_builder,
    verify: atrank_verify_hashes,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        b.options.verify_hashes = match verify {
            ATRANK_VERIFY_HASHES_SMALL => VerifyHashes::Small,
            ATRANK_VERIFY_HASHES_ALL => VerifyHashes::All,
            other => {
                return Err(Error::invalid(format!(
                    "verify {other} is not an atrank_verify_hashes \
                     (ATRANK_VERIFY_HASHES_SMALL = 0, ATRANK_VERIFY_HASHES_ALL = 1)"
                )))
            }
        };
        Ok(())
    })
}

/// Sets the ONNX Runtime shared library (full path of `libonnxruntime.so.<version>`). ONNX
/// Runtime loads once per process: a different path after the first load is an error (at build).
///
/// Ownership: the caller keeps the builder; `path` is copied. NULL: `builder` or `path` NULL
/// gives `ATRANK_ERROR_NULL_ARGUMENT`; invalid UTF-8 `ATRANK_ERROR_INVALID_UTF8`.
/// Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_ort_library(
    builder: *mut atrank_model_builder,
    path: *const c_char,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder; NULL or a NUL-terminated string, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        // SAFETY: as above.
        let p = unsafe { str_arg(path, &|| "path".into()) }?;
        b.options.ort_library = Some(PathBuf::from(p));
        Ok(())
    })
}

/// Sets how many ONNX Runtime sessions the model holds (1 ..= 64; default 1). Calls on one
/// session are serialised, so concurrent callers on one model need several: each call takes a
/// free session. Each session holds its own copy of the weights. tract ignores it. Out of
/// range: `ATRANK_ERROR_INVALID_ARGUMENT`.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_sessions(
    builder: *mut atrank_model_builder,
    sessions: usize,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        let max = crate::backend::MAX_SESSIONS;
        if sessions == 0 || sessions > max {
            return Err(Error::invalid(format!(
                "sessions is {sessions}; it must be 1..={max}"
            )));
        }
        b.options.sessions = sessions;
        Ok(())
    })
}

/// Sets whether candidates the user already touched get the score `-INFINITY` (1) or the
/// model's score like any other (0, the default). A candidate counts as touched when one of
/// the request's behaviors in the target group (`group` NULL or the target group's name) has
/// its id, whatever its action and timestamp, including behaviors beyond the group's
/// `max_history`. Sorting by score then puts them last. Any other value:
/// `ATRANK_ERROR_INVALID_ARGUMENT`.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_exclude_seen(
    builder: *mut atrank_model_builder,
    exclude: u32,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        b.options.exclude_seen = match exclude {
            0 => false,
            1 => true,
            other => {
                return Err(Error::invalid(format!(
                    "exclude is {other}; it must be 0 (score seen candidates) or 1 (-INFINITY)"
                )))
            }
        };
        Ok(())
    })
}

/// The most user encodings a model may cache (`atrank_model_builder_set_cache_capacity`).
pub const ATRANK_MAX_CACHE_ENTRIES: usize = 1_048_576;
const _: () = assert!(ATRANK_MAX_CACHE_ENTRIES == crate::backend::MAX_CACHE_ENTRIES);

/// Sets how many user encodings the model caches for packages with split graphs (0: off;
/// at most `ATRANK_MAX_CACHE_ENTRIES`, else `ATRANK_ERROR_INVALID_ARGUMENT`). Nothing is
/// allocated for the capacity up front; the cache's memory is bounded by
/// `atrank_model_builder_set_cache_bytes` too.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_cache_capacity(
    builder: *mut atrank_model_builder,
    entries: usize,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        if entries > ATRANK_MAX_CACHE_ENTRIES {
            return Err(Error::invalid(format!(
                "entries is {entries}; it must be 0..={ATRANK_MAX_CACHE_ENTRIES}"
            )));
        }
        b.options.cache_capacity = entries;
        Ok(())
    })
}

/// Sets the most bytes of user encodings the model's cache holds (default 256 MiB); the least
/// recently used are evicted to stay under it, and an encoding larger than the whole budget is
/// not cached. 0 is accepted and caches nothing.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_cache_bytes(
    builder: *mut atrank_model_builder,
    bytes: usize,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        b.options.cache_bytes = bytes;
        Ok(())
    })
}

/// Sets the most candidate rows one graph run of `atrank_model_score_batch` takes (default
/// 1024): a batch with more runs in several, each request whole, and a request with more
/// candidates than this runs alone. The rows of a run are its requests times its longest
/// candidate list (on tract, each rounded up to a power of two, as tract pads them). Smaller
/// runs keep every tensor over the candidates near the size of a core's cache; at the paper's
/// size, one request per run was fastest at 1,000 candidates and about 8 at 100
/// (docs/benchmarks.md). 0: no row limit (requests of similar sizes still share a run). Any
/// value is accepted.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_batch_rows(
    builder: *mut atrank_model_builder,
    rows: usize,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        b.options.batch_rows = rows;
        Ok(())
    })
}

/// Sets which of atrank's own tract kernels replace tract's nodes at load: a bitwise OR of
/// `ATRANK_TRACT_FUSE_ATTENTION` and `ATRANK_TRACT_FUSE_LAYER_NORM`, or
/// `ATRANK_TRACT_FUSE_NONE`. The default is both in a release build of the library and none
/// in a build with debug assertions. The kernels score within the golden tolerance of tract's
/// own nodes and were 1.8 to 2.4 times faster end to end at the paper's size (docs/benchmarks.md);
/// `atrank_stats` counts what was fused. ONNX Runtime ignores it. Any other bit:
/// `ATRANK_ERROR_INVALID_ARGUMENT`.
///
/// Ownership: the caller keeps the builder. NULL: `builder` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: exclusive (one thread at a time per builder).
#[no_mangle]
pub extern "C" fn atrank_model_builder_set_tract_fusion(
    builder: *mut atrank_model_builder,
    fusion: atrank_tract_fusion,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live builder, per the contract.
        let b = unsafe { builder_mut(builder) }?;
        let known = ATRANK_TRACT_FUSE_ATTENTION | ATRANK_TRACT_FUSE_LAYER_NORM;
        if fusion & !known != 0 {
            return Err(Error::invalid(format!(
                "fusion is {fusion}; it must be a bitwise OR of ATRANK_TRACT_FUSE_ATTENTION (1) \
                 and ATRANK_TRACT_FUSE_LAYER_NORM (2)"
            )));
        }
        b.options.tract_fused_attention = fusion & ATRANK_TRACT_FUSE_ATTENTION != 0;
        b.options.tract_fused_layer_norm = fusion & ATRANK_TRACT_FUSE_LAYER_NORM != 0;
        Ok(())
    })
}

/// Takes ownership of a builder and loads its model.
///
/// # Safety
/// `builder` must be NULL or a live builder from `atrank_model_builder_new`; it is consumed.
pub(crate) unsafe fn build_model(builder: *mut atrank_model_builder) -> Result<Model> {
    if builder.is_null() {
        return Err(Error::NullArgument("builder".into()));
    }
    // SAFETY: a live builder from `atrank_model_builder_new`, consumed exactly here.
    let b = unsafe { Box::from_raw(builder) };
    Model::load_with(&b.dir, &b.options)
}

/// Loads the model with the builder's options.
///
/// Ownership: always consumes `builder`, on success and on error (do not use or free it
/// afterwards). On success the caller owns the model written to `*model_out` and frees it with
/// `atrank_model_free`; on error `*model_out` is untouched. NULL: `builder` or `model_out` NULL
/// gives `ATRANK_ERROR_NULL_ARGUMENT` (a non-NULL builder is still consumed).
/// Thread safety: exclusive on the builder; loads of different builders may run at once.
#[no_mangle]
pub extern "C" fn atrank_model_builder_build(
    builder: *mut atrank_model_builder,
    model_out: *mut *const atrank_model,
) -> *mut atrank_error {
    wrap(|| {
        if model_out.is_null() {
            // Still consume the builder, as documented.
            atrank_model_builder_free(builder);
            return Err(Error::NullArgument("model_out".into()));
        }
        // SAFETY: NULL or a live builder, consumed here, per the contract.
        let model = Arc::new(unsafe { build_model(builder) }?);
        // SAFETY: non-NULL and writable per the contract.
        unsafe { model_out.write(atrank_model::into_raw(model)) };
        Ok(())
    })
}

/// Frees a builder that was not built.
///
/// Ownership: takes `builder` back; do not use it afterwards. NULL: accepted and ignored.
/// Thread safety: exclusive (no other call on this builder may be in progress).
#[no_mangle]
pub extern "C" fn atrank_model_builder_free(builder: *mut atrank_model_builder) {
    super::guard((), || {
        if !builder.is_null() {
            // SAFETY: a live builder from `atrank_model_builder_new`, freed once.
            drop(unsafe { Box::from_raw(builder) });
        }
    })
}

/// What actually runs `model`'s graph (`ATRANK_SERVING_*`), e.g. `ATRANK_SERVING_ORT_CPU`
/// after a permissive GPU request fell back. Written to `*serving_out` on success only.
///
/// Ownership: borrows `model`. NULL: `model` or `serving_out` NULL gives
/// `ATRANK_ERROR_NULL_ARGUMENT`. Thread safety: thread-safe (any number of threads at once on
/// the same model).
#[no_mangle]
pub extern "C" fn atrank_model_serving(
    model: *const atrank_model,
    serving_out: *mut atrank_serving,
) -> *mut atrank_error {
    wrap(|| {
        // SAFETY: NULL or a live handle, per the contract.
        let model = unsafe { atrank_model::as_model(model, "model") }?;
        if serving_out.is_null() {
            return Err(Error::NullArgument("serving_out".into()));
        }
        let value = match model.serving() {
            Serving::OrtCpu => ATRANK_SERVING_ORT_CPU,
            Serving::OrtCuda => ATRANK_SERVING_ORT_CUDA,
            Serving::Tract => ATRANK_SERVING_TRACT,
        };
        // SAFETY: non-NULL and writable per the contract.
        unsafe { serving_out.write(value) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_verify_hashes_takes_the_two_values_and_refuses_others() {
        let dir = std::ffi::CString::new("pkg").unwrap();
        let mut b: *mut atrank_model_builder = std::ptr::null_mut();
        assert!(atrank_model_builder_new(dir.as_ptr(), &mut b).is_null());
        // SAFETY: `b` is the live builder just made; nothing else uses it.
        let options = |b: *mut atrank_model_builder| unsafe { (*b).options.verify_hashes };
        assert_eq!(options(b), VerifyHashes::Small);
        assert!(atrank_model_builder_set_verify_hashes(b, ATRANK_VERIFY_HASHES_ALL).is_null());
        assert_eq!(options(b), VerifyHashes::All);
        assert!(atrank_model_builder_set_verify_hashes(b, ATRANK_VERIFY_HASHES_SMALL).is_null());
        assert_eq!(options(b), VerifyHashes::Small);
        for bad in [2, u32::MAX] {
            let e = atrank_model_builder_set_verify_hashes(b, bad);
            assert!(!e.is_null());
            let code = super::super::error::atrank_error_code(e);
            assert_eq!(
                code,
                super::super::error::atrank_code::ATRANK_ERROR_INVALID_ARGUMENT
            );
            // SAFETY: a live error's message: a NUL-terminated string it owns.
            let msg =
                unsafe { std::ffi::CStr::from_ptr(super::super::error::atrank_error_message(e)) };
            let msg = msg.to_string_lossy();
            assert!(
                msg.contains(&format!("verify {bad} is not an atrank_verify_hashes")),
                "{msg}"
            );
            super::super::error::atrank_error_free(e);
            assert_eq!(options(b), VerifyHashes::Small);
        }
        let e = atrank_model_builder_set_verify_hashes(std::ptr::null_mut(), 1);
        assert!(!e.is_null());
        super::super::error::atrank_error_free(e);
        atrank_model_builder_free(b);
    }
}
