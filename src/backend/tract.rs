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
    /// The graph's input names, in graph order.
    order: Vec<String>,
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
        let mut order = Vec::new();
        for outlet in graph.input_outlets().map_err(ctx)? {
            let node = graph.node(outlet.node).name.as_str();
            if !spec.inputs.iter().any(|n| n == node) {
                return Err(Error::package(format!(
                    "graph input {node:?} is not named in spec.json"
                )));
            }
            order.push(node.to_owned());
        }
        if order.len() != spec.inputs.len() {
            return Err(Error::package(format!(
                "graph has {} inputs, spec.json names {}",
                order.len(),
                spec.inputs.len()
            )));
        }
        let output = graph
            .output_outlets()
            .map_err(ctx)?
            .iter()
            .position(|o| {
                graph.node(o.node).name == spec.output
                    || graph.outlet_label(*o) == Some(spec.output.as_str())
            })
            .ok_or_else(|| Error::package(format!("graph has no output {:?}", spec.output)))?;
        Ok(TractScorer {
            plan,
            order,
            output,
        })
    }
}

impl Scorer for TractScorer {
    fn score(&self, p: &Prepared) -> Result<Vec<f32>> {
        let mut inputs: TVec<TValue> = TVec::new();
        for name in &self.order {
            let t = p.get(name).ok_or_else(|| {
                Error::Backend(format!("no tensor prepared for graph input {name:?}"))
            })?;
            let value = Tensor::from_shape(&t.shape, &t.data)
                .map_err(|e| Error::backend("tract input", e))?;
            inputs.push(value.into_tvalue());
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
