//! The tract backend: pure Rust, CPU. The optimised plan is immutable and shared; each call
//! spawns its own state, so any number of threads can score at once.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::Scorer;
use crate::preprocess::Prepared;
use crate::spec::Spec;
use crate::{Error, Result};

/// A tract plan for the package's graph.
pub struct TractScorer {
    plan: Arc<TypedRunnableModel>,
    spec: Spec,
    /// For each graph input (in graph order), its index in `named_inputs`.
    order: Vec<usize>,
    output: usize,
}

impl TractScorer {
    /// Loads and optimises the graph at `path`.
    pub fn load(spec: &Spec, path: &Path) -> Result<TractScorer> {
        let ctx =
            |e: TractError| Error::backend(&format!("tract cannot load {}", path.display()), e);
        let model = tract_onnx::onnx().model_for_path(path).map_err(ctx)?;
        let plan = model
            .into_optimized()
            .map_err(ctx)?
            .into_runnable()
            .map_err(ctx)?;
        let graph = plan.model();
        let names: Vec<String> = super::named_inputs(spec, &dummy())?
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        let mut order = Vec::new();
        for outlet in graph.input_outlets().map_err(ctx)? {
            let node = graph.node(outlet.node).name.as_str();
            let at = names.iter().position(|n| n == node).ok_or_else(|| {
                Error::package(format!("graph input {node:?} is not named in spec.json"))
            })?;
            order.push(at);
        }
        if order.len() != names.len() {
            return Err(Error::package(format!(
                "graph has {} inputs, spec.json names {}",
                order.len(),
                names.len()
            )));
        }
        let output = graph
            .output_outlets()
            .map_err(ctx)?
            .iter()
            .position(|o| {
                graph.node(o.node).name == spec.graph.output
                    || graph.outlet_label(*o) == Some(spec.graph.output.as_str())
            })
            .ok_or_else(|| {
                Error::package(format!("graph has no output {:?}", spec.graph.output))
            })?;
        Ok(TractScorer {
            plan,
            spec: spec.clone(),
            order,
            output,
        })
    }
}

fn dummy() -> Prepared {
    Prepared {
        users: 0,
        history_len: 0,
        candidates: 0,
        hist_item: vec![],
        hist_category: vec![],
        hist_action: vec![],
        hist_time: vec![],
        hist_len: vec![],
        cand_item: vec![],
        cand_category: vec![],
    }
}

impl Scorer for TractScorer {
    fn score(&self, p: &Prepared) -> Result<Vec<f32>> {
        let named = super::named_inputs(&self.spec, p)?;
        let mut inputs: TVec<TValue> = TVec::new();
        for &at in &self.order {
            let (_, shape, data) = &named[at];
            let t =
                Tensor::from_shape(shape, data).map_err(|e| Error::backend("tract input", e))?;
            inputs.push(t.into_tvalue());
        }
        let outputs = self
            .plan
            .run(inputs)
            .map_err(|e| Error::backend("tract run", e))?;
        let out = outputs
            .get(self.output)
            .ok_or_else(|| Error::Backend("tract returned no output".into()))?;
        let view = out
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::backend("tract output", e))?;
        if view.shape() != [p.users, p.candidates] {
            return Err(Error::Backend(format!(
                "tract output has shape {:?}, expected [{}, {}]",
                view.shape(),
                p.users,
                p.candidates
            )));
        }
        Ok(view.iter().copied().collect())
    }
}
