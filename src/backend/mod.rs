//! Inference backends. Each turns a [`Prepared`] batch into logits; the split follows tract's
//! Runtime -> Runnable -> State design: [`prepare`] loads a graph once into a shareable
//! [`Scorer`], and per-call state stays inside [`Scorer::score`].

use std::path::Path;

use crate::preprocess::Prepared;
use crate::spec::Spec;
use crate::{Error, Result};

#[cfg(feature = "backend-ort")]
pub mod ort;
#[cfg(feature = "backend-tract")]
pub mod tract;

/// Which inference engine runs the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// ONNX Runtime (CPU), through the `ort` crate, loaded dynamically at run time.
    Ort,
    /// tract, pure Rust (CPU).
    Tract,
}

impl Backend {
    /// Lower-case name (`ort`, `tract`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ort => "ort",
            Backend::Tract => "tract",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A loaded graph, ready to score from any number of threads.
pub trait Scorer: Send + Sync {
    /// Runs the graph; returns the `[B, N]` logits, row-major.
    fn score(&self, inputs: &Prepared) -> Result<Vec<f32>>;
}

/// Loads the package's graph into the chosen backend.
pub fn prepare(backend: Backend, spec: &Spec, dir: &Path) -> Result<Box<dyn Scorer>> {
    let graph = dir.join(&spec.graph_file);
    if !graph.is_file() {
        return Err(Error::package(format!(
            "graph file {} is missing",
            graph.display()
        )));
    }
    match backend {
        #[cfg(feature = "backend-ort")]
        Backend::Ort => Ok(Box::new(ort::OrtScorer::load(spec, &graph)?)),
        #[cfg(feature = "backend-tract")]
        Backend::Tract => Ok(Box::new(tract::TractScorer::load(spec, &graph)?)),
        #[allow(unreachable_patterns)]
        other => Err(Error::BackendUnavailable(format!(
            "backend {other} is not compiled into this build of atrank"
        ))),
    }
}
