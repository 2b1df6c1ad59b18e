//! The crate's one error type and its stable numeric codes.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stable numeric error codes, shared with the C ABI (`atrank_code`). Numbers are never reused:
/// a retired code stays reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument's value is not acceptable (empty, too long, lengths that disagree, ...).
    InvalidArgument = 2,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 3,
    /// A file of the package could not be read.
    Io = 4,
    /// The package is malformed: bad spec, unsupported version, missing or corrupt files.
    InvalidPackage = 5,
    /// The requested backend is not compiled in, or its runtime library cannot be loaded.
    BackendUnavailable = 6,
    /// The backend failed while loading or running the graph.
    Backend = 7,
    /// A Rust panic was caught at the C boundary (a bug in atrank; please report it).
    Panic = 8,
    /// The caller's output buffer has the wrong length.
    BufferSize = 9,
}

/// Everything that can go wrong in atrank. Every variant carries a message that says what was
/// wrong and where (the argument, the file, the index).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// See [`ErrorCode::NullArgument`].
    #[error("{0} is NULL")]
    NullArgument(String),
    /// See [`ErrorCode::InvalidArgument`].
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// See [`ErrorCode::InvalidUtf8`].
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(String),
    /// See [`ErrorCode::Io`].
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// See [`ErrorCode::InvalidPackage`].
    #[error("invalid model package: {0}")]
    InvalidPackage(String),
    /// See [`ErrorCode::BackendUnavailable`].
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    /// See [`ErrorCode::Backend`].
    #[error("backend error: {0}")]
    Backend(String),
    /// See [`ErrorCode::Panic`].
    #[error("internal panic: {0}")]
    Panic(String),
    /// See [`ErrorCode::BufferSize`].
    #[error("buffer size: {0}")]
    BufferSize(String),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NullArgument(_) => ErrorCode::NullArgument,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::InvalidUtf8(_) => ErrorCode::InvalidUtf8,
            Error::Io { .. } => ErrorCode::Io,
            Error::InvalidPackage(_) => ErrorCode::InvalidPackage,
            Error::BackendUnavailable(_) => ErrorCode::BackendUnavailable,
            Error::Backend(_) => ErrorCode::Backend,
            Error::Panic(_) => ErrorCode::Panic,
            Error::BufferSize(_) => ErrorCode::BufferSize,
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    pub(crate) fn package(msg: impl fmt::Display) -> Self {
        Error::InvalidPackage(msg.to_string())
    }

    pub(crate) fn invalid(msg: impl fmt::Display) -> Self {
        Error::InvalidArgument(msg.to_string())
    }

    pub(crate) fn backend(context: &str, err: impl fmt::Display) -> Self {
        // `{:#}` keeps the whole cause chain for anyhow-style errors (tract).
        Error::Backend(format!("{context}: {err:#}"))
    }
}

/// The message of a caught panic's payload (a `&str` or `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
