//! atrank: an embeddable ATRank ranker.
//!
//! A [`Model`] is loaded from a *model package* (ONNX graphs with their `tables.bin`,
//! `spec.json`, memory-mapped vocabularies and catalogs, golden requests; written by the
//! `export/` Python package; see `docs/package-format-v3.md`: format 3 is the only one read).
//! Callers hand in raw behaviors and candidate ids; the crate does the grouped-embedding
//! preprocessing and runs the graph through ONNX Runtime (`backend-ort`) or
//! tract (`backend-tract`). The same functionality is exposed to C, C++ and Go through the C ABI
//! in [`ffi`] (header `capi/include/atrank.h`).
//!
//! ```no_run
//! use atrank::{Backend, Behavior, Model, Request};
//! let model = Model::load("package/", Backend::Tract)?;
//! let history = [Behavior::item("242", None, Some("like"), 881250949)];
//! let scores = model.score(&Request {
//!     behaviors: &history,
//!     candidates: &["302", "377"],
//!     request_time: 881251000,
//! })?;
//! assert_eq!(scores.len(), 2);
//! # Ok::<(), atrank::Error>(())
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod backend;
mod error;
#[allow(unsafe_code)]
pub mod ffi;
mod handle;
pub mod metrics;
mod model;
pub mod package;
pub mod preprocess;
pub mod spec;
pub mod vocab;

pub use backend::{Backend, GpuPolicy, LoadOptions, Serving};
pub use error::{Error, ErrorCode, Result};
pub use handle::ModelHandle;
pub use metrics::{CallStats, Entry, ModelInfo, ModelStats};
pub use model::{CacheStats, Model, MAX_USER_KEY_BYTES};
pub use package::VerifyHashes;
pub use preprocess::{Behavior, Request};
pub use spec::Precision;
