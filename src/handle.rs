//! [`ModelHandle`]: a model that can be replaced while other threads score with it.

use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::backend::LoadOptions;
use crate::{Error, Model, Request, Result};

/// A shared, hot-swappable model. Scoring takes a reference-counted snapshot of the current
/// model, so a swap never waits for in-flight requests and never interrupts them: requests
/// that started on the old model finish on it, later ones use the new one. A failed load
/// leaves the old model serving.
#[derive(Debug)]
pub struct ModelHandle {
    /// The model serving now and its generation, swapped together.
    current: RwLock<(Arc<Model>, u64)>,
}

impl ModelHandle {
    /// Wraps a loaded model (generation 1).
    pub fn new(model: Model) -> ModelHandle {
        ModelHandle::from_arc(Arc::new(model))
    }

    /// Wraps a model that is already shared (generation 1).
    pub fn from_arc(model: Arc<Model>) -> ModelHandle {
        ModelHandle {
            current: RwLock::new((model, 1)),
        }
    }

    /// Loads the package in `dir`.
    pub fn load(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<ModelHandle> {
        Ok(ModelHandle::new(Model::load_with(dir, options)?))
    }

    /// The model serving now.
    pub fn current(&self) -> Result<Arc<Model>> {
        Ok(self.snapshot()?.0)
    }

    /// The model serving now and its generation, read together (a reload between reading one
    /// and the other cannot mismatch them).
    pub fn snapshot(&self) -> Result<(Arc<Model>, u64)> {
        self.current
            .read()
            .map(|c| (Arc::clone(&c.0), c.1))
            .map_err(|_| Error::Backend("model handle lock poisoned".into()))
    }

    /// How many models this handle has served (1 + successful swaps).
    pub fn generation(&self) -> u64 {
        match self.current.read() {
            Ok(c) => c.1,
            Err(poisoned) => poisoned.into_inner().1,
        }
    }

    /// Loads `dir` and swaps it in atomically; returns the new generation. On error the
    /// current model keeps serving and the error says why the new one was refused.
    pub fn reload(&self, dir: impl AsRef<Path>, options: &LoadOptions) -> Result<u64> {
        let model = Model::load_with(dir, options)?;
        self.swap(model)
    }

    /// Swaps in an already loaded model; returns the new generation.
    pub fn swap(&self, model: Model) -> Result<u64> {
        self.swap_arc(Arc::new(model))
    }

    /// Swaps in an already shared model; returns the new generation.
    pub fn swap_arc(&self, model: Arc<Model>) -> Result<u64> {
        let mut slot = self
            .current
            .write()
            .map_err(|_| Error::Backend("model handle lock poisoned".into()))?;
        slot.1 += 1;
        slot.0 = model;
        Ok(slot.1)
    }

    /// Scores one request on the current model.
    pub fn score(&self, request: &Request<'_>) -> Result<Vec<f32>> {
        self.current()?.score(request)
    }
}
