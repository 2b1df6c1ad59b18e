//! The C ABI. The only `extern "C"` functions and raw-pointer handling in the crate live here;
//! each entry point checks its arguments and calls safe Rust. Conventions (see README, "API
//! conventions"): opaque handles, `atrank_error *` returned from every fallible function (NULL
//! = success), out-parameters written only on success, and no panic ever crosses the boundary.
#![allow(non_camel_case_types)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Entry points are safe `extern "C" fn`s called from C: the validity of the pointers they
// receive is the documented C contract, checked for NULL here, as in rustls-ffi.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::{Cell, RefCell};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

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

/// The longest string (in bytes, without its NUL) any `const char *` argument may have: ids,
/// names, feature values, user keys and paths alike (`PATH_MAX` is 4096 on Linux). A string
/// is scanned for its NUL only up to this length, never further.
pub const ATRANK_MAX_STRING_BYTES: usize = 4096;

thread_local! {
    /// How deep this thread is inside atrank's entry points (panics there are reported in the
    /// returned error, not printed).
    static IN_ENTRY: Cell<u32> = const { Cell::new(0) };
    /// Where the last panic inside an entry point happened.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static QUIET_PANICS: Once = Once::new();

/// Installs, once per process, a panic hook that stays silent for panics inside atrank's entry
/// points (their message and location go into the returned `atrank_error`) and hands every
/// other panic to the hook that was installed before, so the host's own panics print as usual.
fn quiet_panics() {
    QUIET_PANICS.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_ENTRY.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` as an entry point's body: panics are caught quietly; returns the panic's message
/// (with its location) on a panic.
fn entry<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    quiet_panics();
    IN_ENTRY.with(|d| d.set(d.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    IN_ENTRY.with(|d| d.set(d.get().saturating_sub(1)));
    outcome.map_err(|payload| {
        let message = crate::error::panic_message(&*payload);
        match PANIC_AT.with(|p| p.borrow_mut().take()) {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }
    })
}

/// Runs `f`, turning an `Err` or a panic into an owned `atrank_error *` (NULL on success).
pub(crate) fn wrap(f: impl FnOnce() -> Result<()>) -> *mut atrank_error {
    match entry(f) {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(e)) => atrank_error::into_raw(e),
        Err(message) => atrank_error::into_raw(Error::Panic(message)),
    }
}

/// Runs an infallible body; a panic yields `fallback` instead of unwinding into C.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    entry(f).unwrap_or(fallback)
}

/// Borrows a required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &dyn Fn() -> String) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::NullArgument(what()));
    }
    let mut len = 0usize;
    loop {
        // SAFETY: the string is NUL-terminated per this function's contract, and the scan stops
        // at the first NUL, so every byte read up to it lies inside the string.
        if unsafe { *ptr.add(len) } == 0 {
            break;
        }
        len += 1;
        if len > ATRANK_MAX_STRING_BYTES {
            return Err(Error::invalid(format!(
                "{} is longer than ATRANK_MAX_STRING_BYTES ({ATRANK_MAX_STRING_BYTES} bytes)",
                what()
            )));
        }
    }
    // SAFETY: `len` bytes before the NUL, all inside the string (scanned above).
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8(what()))
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

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "ATRANK_PANIC_TEST_CHILD";

    /// A panic inside an entry point becomes an `ATRANK_ERROR_PANIC` error carrying its message
    /// and location, and prints nothing on stderr; a panic outside atrank still reaches the
    /// host's hook and prints. Runs in a child process (this test binary, this test only, output
    /// not captured): panic hooks are process-wide, and other tests panic on their own threads.
    #[test]
    fn panics_inside_entry_points_are_quiet_and_reported_in_the_error() {
        if std::env::var_os(CHILD).is_some() {
            child();
            return;
        }
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "ffi::tests::panics_inside_entry_points_are_quiet_and_reported_in_the_error",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test:\n{stdout}"
        );
        assert!(
            stderr.contains("the host's own panic"),
            "host panic not printed:\n{stderr}"
        );
        assert!(
            !stderr.contains("boom in an entry point"),
            "printed:\n{stderr}"
        );
        assert!(!stderr.contains("boom in a guard"), "printed:\n{stderr}");
    }

    fn child() {
        let err = wrap(|| panic!("boom in an entry point"));
        assert!(!err.is_null());
        let code = error::atrank_error_code(err);
        // SAFETY: `err` is a live error; its message is NUL-terminated and lives until freed.
        let message = unsafe { std::ffi::CStr::from_ptr(error::atrank_error_message(err)) }
            .to_string_lossy()
            .into_owned();
        error::atrank_error_free(err);
        assert_eq!(code, atrank_code::ATRANK_ERROR_PANIC);
        assert!(message.contains("boom in an entry point"), "{message}");
        assert!(
            message.contains("src/ffi/mod.rs:"),
            "{message}: no location"
        );
        assert_eq!(guard(7, || -> i32 { panic!("boom in a guard") }), 7);
        let outside = std::panic::catch_unwind(|| panic!("the host's own panic"));
        assert!(outside.is_err());
    }
}
