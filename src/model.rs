//! [`Model`]: a loaded package (spec + preprocessing tables + backend scorer).

use std::path::{Path, PathBuf};

use crate::backend::{self, Backend, Scorer};
use crate::preprocess::{Prepared, Preprocessor, Request};
use crate::spec::Spec;
use crate::Result;

/// A loaded model package. Immutable once loaded; `Send + Sync`, so one `Model` (e.g. in an
/// `Arc`) serves any number of threads.
pub struct Model {
    spec: Spec,
    dir: PathBuf,
    backend: Backend,
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
    /// Loads the package in `dir` and prepares its graph on `backend`.
    pub fn load(dir: impl AsRef<Path>, backend: Backend) -> Result<Model> {
        let dir = dir.as_ref();
        let spec = Spec::read(dir)?;
        let preprocessor = Preprocessor::load(&spec, dir)?;
        let scorer = backend::prepare(backend, &spec, dir)?;
        Ok(Model {
            spec,
            dir: dir.to_path_buf(),
            backend,
            preprocessor,
            scorer,
        })
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
