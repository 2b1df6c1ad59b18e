//! Library and ABI versions.

use std::ffi::c_char;

/// The C ABI version. Bumped on any incompatible change to the header; a binding compares it
/// with the `ATRANK_ABI_VERSION` it was compiled against.
pub const ABI_VERSION: u32 = 1;

/// The library version, e.g. "0.1.0".
///
/// Ownership: a static NUL-terminated string; never free it. NULL: takes no pointer.
/// Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// The C ABI version of the loaded library (compare with `ATRANK_ABI_VERSION`).
///
/// Ownership: nothing. NULL: takes no pointer. Thread safety: thread-safe.
#[no_mangle]
pub extern "C" fn atrank_abi_version() -> u32 {
    ABI_VERSION
}
