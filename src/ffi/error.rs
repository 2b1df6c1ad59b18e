//! `atrank_error`: an owned error object with a stable code and a message.

use std::ffi::{c_char, CString};

use crate::{Error, ErrorCode};

/// Stable numeric codes of `atrank_error` objects. Numbers are never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum atrank_code {
    /// Success. Never carried by an error object; returned by `atrank_error_code(NULL)`.
    ATRANK_OK = 0,
    /// A required pointer argument was NULL; the message names it.
    ATRANK_ERROR_NULL_ARGUMENT = 1,
    /// An argument's value is unacceptable (empty, too long, lengths that disagree, an
    /// unknown enum value); the message names it.
    ATRANK_ERROR_INVALID_ARGUMENT = 2,
    /// A string argument is not valid UTF-8; the message names it.
    ATRANK_ERROR_INVALID_UTF8 = 3,
    /// A package file could not be read.
    ATRANK_ERROR_IO = 4,
    /// The package is malformed (spec, version, vocabularies, catalog or graph).
    ATRANK_ERROR_INVALID_PACKAGE = 5,
    /// The backend is not compiled in or its runtime library cannot be loaded.
    ATRANK_ERROR_BACKEND_UNAVAILABLE = 6,
    /// The backend failed while loading or running the graph.
    ATRANK_ERROR_BACKEND = 7,
    /// A panic inside atrank was caught at the boundary (a bug; please report it).
    ATRANK_ERROR_PANIC = 8,
    /// An output buffer's length does not match what the call produces.
    ATRANK_ERROR_BUFFER_SIZE = 9,
}

impl From<ErrorCode> for atrank_code {
    fn from(c: ErrorCode) -> Self {
        match c {
            ErrorCode::NullArgument => atrank_code::ATRANK_ERROR_NULL_ARGUMENT,
            ErrorCode::InvalidArgument => atrank_code::ATRANK_ERROR_INVALID_ARGUMENT,
            ErrorCode::InvalidUtf8 => atrank_code::ATRANK_ERROR_INVALID_UTF8,
            ErrorCode::Io => atrank_code::ATRANK_ERROR_IO,
            ErrorCode::InvalidPackage => atrank_code::ATRANK_ERROR_INVALID_PACKAGE,
            ErrorCode::BackendUnavailable => atrank_code::ATRANK_ERROR_BACKEND_UNAVAILABLE,
            ErrorCode::Backend => atrank_code::ATRANK_ERROR_BACKEND,
            ErrorCode::Panic => atrank_code::ATRANK_ERROR_PANIC,
            ErrorCode::BufferSize => atrank_code::ATRANK_ERROR_BUFFER_SIZE,
        }
    }
}

/// An error returned by an atrank function: a stable code and a UTF-8 message.
///
/// Ownership: the caller owns every `atrank_error *` it receives and frees it with
/// `atrank_error_free`. Thread safety: an error may be moved to another thread, but must not be
/// used from two threads at once.
pub struct atrank_error {
    code: atrank_code,
    message: CString,
}

impl atrank_error {
    pub(crate) fn into_raw(e: Error) -> *mut atrank_error {
        let text = format!("{e:#}").replace('\0', "\\0");
        let message = CString::new(text).unwrap_or_default();
        Box::into_raw(Box::new(atrank_error {
            code: e.code().into(),
            message,
        }))
    }
}

/// The stable code of `error`; `ATRANK_OK` when `error` is NULL.
///
/// Ownership: borrows `error`. NULL: returns `ATRANK_OK`.
/// Thread safety: thread-safe (it does not modify the error).
#[no_mangle]
pub extern "C" fn atrank_error_code(error: *const atrank_error) -> atrank_code {
    super::guard(atrank_code::ATRANK_ERROR_PANIC, || {
        // SAFETY: the caller passes NULL or a live error from this library.
        match unsafe { error.as_ref() } {
            Some(e) => e.code,
            None => atrank_code::ATRANK_OK,
        }
    })
}

/// The message of `error`: NUL-terminated UTF-8 that says what was wrong and where.
///
/// Ownership: the string is owned by the error and valid until `atrank_error_free`; do not free
/// it. NULL: returns a static empty string. Thread safety: thread-safe (it does not modify the
/// error).
#[no_mangle]
pub extern "C" fn atrank_error_message(error: *const atrank_error) -> *const c_char {
    super::guard(c"".as_ptr(), || {
        // SAFETY: the caller passes NULL or a live error from this library.
        match unsafe { error.as_ref() } {
            Some(e) => e.message.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Frees an error.
///
/// Ownership: takes `error` back; call at most once per error, and do not use its message
/// afterwards. NULL: accepted and ignored. Thread safety: exclusive (no other call on this error
/// may be in progress).
#[no_mangle]
pub extern "C" fn atrank_error_free(error: *mut atrank_error) {
    super::guard((), || {
        if !error.is_null() {
            // SAFETY: a non-NULL error was created by `Box::into_raw` in this library and the
            // caller frees it only once.
            drop(unsafe { Box::from_raw(error) });
        }
    })
}
