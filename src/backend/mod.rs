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

/// One graph input: its name, shape and row-major data.
pub(crate) type NamedInput<'p> = (String, Vec<usize>, &'p [i64]);

/// The graph's input names in the order the backends feed them, paired with the tensors.
pub(crate) fn named_inputs<'p>(spec: &Spec, p: &'p Prepared) -> Result<Vec<NamedInput<'p>>> {
    let h = &spec.graph.inputs.history;
    let c = &spec.graph.inputs.candidate;
    let name = |m: &std::collections::BTreeMap<String, String>, k: &str| -> Result<String> {
        m.get(k)
            .cloned()
            .ok_or_else(|| Error::package(format!("graph input {k:?} missing")))
    };
    let (b, l, n) = (p.users, p.history_len, p.candidates);
    Ok(vec![
        (name(h, "item")?, vec![b, l], &p.hist_item[..]),
        (name(h, "category")?, vec![b, l], &p.hist_category[..]),
        (name(h, "action")?, vec![b, l], &p.hist_action[..]),
        (name(h, "time_bucket")?, vec![b, l], &p.hist_time[..]),
        (
            spec.graph.inputs.history_length.clone(),
            vec![b],
            &p.hist_len[..],
        ),
        (name(c, "item")?, vec![b, n], &p.cand_item[..]),
        (name(c, "category")?, vec![b, n], &p.cand_category[..]),
    ])
}

/// Loads the package's graph into the chosen backend.
pub fn prepare(backend: Backend, spec: &Spec, dir: &Path) -> Result<Box<dyn Scorer>> {
    let graph = dir.join(&spec.graph.file);
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
