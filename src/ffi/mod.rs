//! The C ABI. The only `extern "C"` functions and raw-pointer handling in the crate live here;
//! each entry point checks its arguments and calls safe Rust. Conventions (see README, "API
//! conventions"): opaque handles, `atrank_error *` returned from every fallible function (NULL
//! = success), out-parameters written only on success, and no panic ever crosses the boundary.
#![allow(non_camel_case_types)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Entry points are safe `extern "C" fn`s called from C: the validity of the pointers they
// receive is the documented C contract, checked for NULL here, as in rustls-ffi.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{Error, Result};

pub mod builder;
pub mod error;
pub mod handle;
pub mod model;
pub mod score;
pub mod stats;
pub mod version;

pub use builder::*;
pub use error::*;
pub use handle::*;
pub use model::*;
pub use score::*;
pub use stats::*;
pub use version::*;

/// Runs `f`, turning an `Err` or a panic into an owned `atrank_error *` (NULL on success).
pub(crate) fn wrap(f: impl FnOnce() -> Result<()>) -> *mut atrank_error {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(e)) => atrank_error::into_raw(e),
        Err(payload) => atrank_error::into_raw(Error::Panic(panic_message(&*payload))),
    }
}

/// Runs an infallible body; a panic yields `fallback` instead of unwinding into C.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// Borrows a required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &dyn Fn() -> String) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::NullArgument(what()));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let cstr = unsafe { CStr::from_ptr(ptr) };
    cstr.to_str().map_err(|_| Error::InvalidUtf8(what()))
}

/// Like [`str_arg`], but NULL means `None`.
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(
    ptr: *const c_char,
    what: &dyn Fn() -> String,
) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(ptr, what) }.map(Some)
    }
}

/// Borrows a `(pointer, length)` array argument. A NULL pointer is accepted only with length 0.
///
/// # Safety
/// `ptr` must be NULL or point to `len` initialised `T`s valid for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Error::NullArgument(format!(
            "{what} (with {what}_len = {len})"
        )));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Error::invalid(format!("{what}_len {len} is too large")));
    }
    if !ptr.is_aligned() {
        return Err(Error::invalid(format!(
            "{what} is not aligned for its element type"
        )));
    }
    // SAFETY: non-NULL, and the caller guarantees `len` valid elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}
