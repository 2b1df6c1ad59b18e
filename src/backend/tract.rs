//! The tract backend: pure Rust, CPU. The optimised plan is immutable and shared; each call
//! spawns its own state, so any number of threads can run a graph at once.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{Feed, Fetched, Graph};
use crate::{Error, Result};

/// A tract plan for one graph.
pub struct TractGraph {
    plan: Arc<TypedRunnableModel>,
    /// The graph's input names, in graph order.
    inputs: Vec<String>,
    /// The graph's output names, in graph order.
    outputs: Vec<String>,
}

impl TractGraph {
    /// Loads and optimises the graph at `path`; checks it has exactly the named `inputs` and
    /// every one of `outputs`.
    pub fn load(path: &Path, inputs: &[String], outputs: &[String]) -> Result<TractGraph> {
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
            order.push(graph.node(outlet.node).name.clone());
        }
        let mut names = Vec::new();
        for o in graph.output_outlets().map_err(ctx)? {
            names.push(
                graph
                    .outlet_label(*o)
                    .map_or_else(|| graph.node(o.node).name.clone(), str::to_owned),
            );
        }
        let have_outputs: Vec<&str> = names.iter().map(String::as_str).collect();
        super::check_names(
            path,
            order.iter().map(String::as_str).collect(),
            inputs,
            &have_outputs,
            outputs,
        )?;
        Ok(TractGraph {
            plan,
            inputs: order,
            outputs: names,
        })
    }
}

impl Graph for TractGraph {
    fn run(&self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>> {
        let mut values: TVec<TValue> = TVec::new();
        for name in &self.inputs {
            let feed = feeds
                .iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| Error::Backend(format!("no tensor fed for graph input {name:?}")))?;
            let tensor = match feed {
                Feed::I64(_, shape, data) => Tensor::from_shape(shape, data),
                Feed::F32(_, shape, data) => Tensor::from_shape(shape, data),
            }
            .map_err(|e| Error::backend("tract input", e))?;
            values.push(tensor.into_tvalue());
        }
        let results = self
            .plan
            .run(values)
            .map_err(|e| Error::backend("tract run", e))?;
        let mut out = Vec::with_capacity(outputs.len());
        for name in outputs {
            let at = self
                .outputs
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| Error::Backend(format!("no output {name:?}")))?;
            let view = results[at]
                .to_plain_array_view::<f32>()
                .map_err(|e| Error::backend(&format!("tract output {name}"), e))?;
            out.push(Fetched {
                shape: view.shape().to_vec(),
                data: view.iter().copied().collect(),
            });
        }
        Ok(out)
    }
}
