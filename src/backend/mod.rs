//! Inference backends. Each turns a [`Prepared`] batch into logits; the split follows tract's
//! Runtime -> Runnable -> State design: [`prepare`] loads a graph once into a shareable
//! [`Scorer`], and per-call state stays inside [`Scorer::score`].

use std::path::{Path, PathBuf};

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

/// Whether and how to use a GPU (ONNX Runtime's CUDA execution provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GpuPolicy {
    /// CPU only.
    #[default]
    Off,
    /// CUDA or an error: loading fails with [`Error::BackendUnavailable`] when the CUDA
    /// execution provider cannot be registered (no GPU, CPU-only ONNX Runtime, missing CUDA
    /// libraries) or when the backend has no GPU support (tract).
    Strict,
    /// CUDA when it can be registered, else the CPU; [`crate::Model::serving`] says which, and
    /// [`crate::Model::fallback_reason`] why.
    Permissive,
}

/// What actually runs a loaded model's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serving {
    /// ONNX Runtime on the CPU.
    OrtCpu,
    /// ONNX Runtime with the CUDA execution provider.
    OrtCuda,
    /// tract on the CPU.
    Tract,
}

impl Serving {
    /// Lower-case name (`ort-cpu`, `ort-cuda`, `tract`).
    pub fn name(self) -> &'static str {
        match self {
            Serving::OrtCpu => "ort-cpu",
            Serving::OrtCuda => "ort-cuda",
            Serving::Tract => "tract",
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The inference engine.
    pub backend: Backend,
    /// Intra-op threads for this model's ONNX Runtime session (at least 1). Set it so that
    /// threads per model x models x concurrent callers does not oversubscribe the host. tract
    /// runs each call on the calling thread and ignores it.
    pub intra_threads: usize,
    /// GPU use (ONNX Runtime only).
    pub gpu: GpuPolicy,
    /// The ONNX Runtime shared library; `None`: `ATRANK_ORT_LIB`, `ORT_DYLIB_PATH`, then
    /// `libonnxruntime.so` (see [`ort::library_path`]).
    pub ort_library: Option<PathBuf>,
}

impl LoadOptions {
    /// Defaults for `backend`: 1 intra-op thread, CPU only, the library from the environment.
    pub fn new(backend: Backend) -> Self {
        LoadOptions {
            backend,
            intra_threads: 1,
            gpu: GpuPolicy::Off,
            ort_library: None,
        }
    }
}

/// A prepared graph and what serves it.
pub struct Loaded {
    /// The scorer.
    pub scorer: Box<dyn Scorer>,
    /// What runs the graph.
    pub serving: Serving,
    /// Why a permissive GPU request fell back to the CPU.
    pub fallback_reason: Option<String>,
}

/// A loaded graph, ready to score from any number of threads.
pub trait Scorer: Send + Sync {
    /// Runs the graph; returns the `[B, N]` logits, row-major.
    fn score(&self, inputs: &Prepared) -> Result<Vec<f32>>;
}

/// Loads the package's graph into the chosen backend.
pub fn prepare(options: &LoadOptions, spec: &Spec, dir: &Path) -> Result<Loaded> {
    let graph = dir.join(&spec.graph_file);
    if !graph.is_file() {
        return Err(Error::package(format!(
            "graph file {} is missing",
            graph.display()
        )));
    }
    if options.intra_threads == 0 {
        return Err(Error::invalid("intra_threads must be at least 1"));
    }
    match options.backend {
        #[cfg(feature = "backend-ort")]
        Backend::Ort => ort::load(spec, &graph, options),
        #[cfg(feature = "backend-tract")]
        Backend::Tract => {
            if options.gpu == GpuPolicy::Strict {
                return Err(Error::BackendUnavailable(
                    "GPU requested with the strict policy, but tract runs on the CPU only".into(),
                ));
            }
            Ok(Loaded {
                scorer: Box::new(tract::TractScorer::load(spec, &graph)?),
                serving: Serving::Tract,
                fallback_reason: (options.gpu == GpuPolicy::Permissive)
                    .then(|| "tract has no GPU support".to_owned()),
            })
        }
        #[allow(unreachable_patterns)]
        other => Err(Error::BackendUnavailable(format!(
            "backend {other} is not compiled into this build of atrank"
        ))),
    }
}
