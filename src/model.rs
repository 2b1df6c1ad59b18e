//! [`Model`]: a loaded package (spec + preprocessing tables + backend scorer).

use std::path::{Path, PathBuf};

use crate::backend::{self, Backend, LoadOptions, Scorer, Serving};
use crate::preprocess::{Prepared, Preprocessor, Request};
use crate::spec::Spec;
use crate::Result;

/// A loaded model package. Immutable once loaded; `Send + Sync`, so one `Model` (e.g. in an
/// `Arc`) serves any number of threads.
pub struct Model {
    spec: Spec,
    dir: PathBuf,
    backend: Backend,
    serving: Serving,
    fallback_reason: Option<String>,
    preprocessor: Preprocessor,
    scorer: Box<dyn Scorer>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dir", &self.dir)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Model {
    /// Loads the package in `dir` and prepares its graph on `backend` with default options
    /// (1 intra-op thread, CPU only).
    pub fn load(dir: impl AsRef<Path>, backend: Backend) -> Result<Model> {
        Model::load_with(dir, &LoadOptions::new(backend))
    }

    /// Loads the package in `dir` as `options` say (backend, threads, GPU policy, ONNX Runtime
    /// library).
    pub fn load_with(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let dir = dir.as_ref();
        let spec = Spec::read(dir)?;
        let preprocessor = Preprocessor::load(&spec, dir)?;
        let loaded = backend::prepare(options, &spec, dir)?;
        Ok(Model {
            spec,
            dir: dir.to_path_buf(),
            backend: options.backend,
            serving: loaded.serving,
            fallback_reason: loaded.fallback_reason,
            preprocessor,
            scorer: loaded.scorer,
        })
    }

    /// What actually runs the graph (e.g. `OrtCpu` after a permissive GPU fallback).
    pub fn serving(&self) -> Serving {
        self.serving
    }

    /// Why a permissive GPU request is served by the CPU, if it is.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The package's spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The package directory this model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The backend running the graph.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The graph inputs this model would build for `requests` (for tests and tools).
    pub fn prepare(&self, requests: &[Request<'_>]) -> Result<Prepared> {
        self.preprocessor.prepare(requests)
    }

    /// Scores one user's candidates: one logit per candidate, in the candidates' order. The
    /// history is encoded once for all candidates.
    pub fn score(&self, request: &Request<'_>) -> Result<Vec<f32>> {
        let prepared = self.preprocessor.prepare(std::slice::from_ref(request))?;
        self.scorer.score(&prepared)
    }

    /// Scores several users in one graph run (histories padded to the longest; every request
    /// must have the same number of candidates). Returns one score vector per request.
    pub fn score_batch(&self, requests: &[Request<'_>]) -> Result<Vec<Vec<f32>>> {
        let prepared = self.preprocessor.prepare(requests)?;
        let flat = self.scorer.score(&prepared)?;
        Ok(flat
            .chunks(prepared.candidates.max(1))
            .map(<[f32]>::to_vec)
            .collect())
    }
}
