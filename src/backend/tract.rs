//! The tract backend: pure Rust, CPU. Plans are immutable and shared; each call spawns its own
//! state, so any number of threads can run a graph at once.
//!
//! A graph keeps one optimised plan with symbolic dimensions (batch, history length,
//! candidates), which runs any input shape, and a bounded cache of plans specialised to exact
//! input shapes. tract optimises a plan with concrete dimensions much further (about 2x faster
//! on the exporter's models), but building one costs a few milliseconds, so a shape gets its
//! own plan only when it comes back: its first sighting runs the symbolic plan. Callers that
//! pad inputs to a few bucketed shapes (see [`crate::Model`]) get cache hits.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use tract_onnx::prelude::*;

use super::{Feed, Fetched, Graph, PlanStats};
use crate::{Error, Result};

/// The input shapes of one run, in graph order.
type ShapeKey = Vec<Vec<usize>>;

/// What the cache knows of a shape that has its own entry.
#[derive(Clone)]
enum Slot {
    /// A thread is building the plan; others run the symbolic plan meanwhile.
    Building,
    /// The plan for this shape.
    Ready(Arc<TypedRunnableModel>),
    /// Building failed; this shape runs the symbolic plan.
    Failed,
}

/// Shapes seen once (waiting for a second sighting) and the per-shape plans.
struct PlanCache {
    seen: LruCache<ShapeKey, ()>,
    plans: LruCache<ShapeKey, Slot>,
}

/// A tract plan for one graph.
pub struct TractGraph {
    /// The optimised plan with symbolic dimensions: runs every shape.
    plan: Arc<TypedRunnableModel>,
    /// The decluttered model before optimisation, from which per-shape plans are built;
    /// `None` when the cache is off.
    typed: Option<TypedModel>,
    /// Per input (graph order), per axis: the symbol that axis carries, if it is a plain one.
    symbols: Vec<Vec<Option<Symbol>>>,
    cache: Option<Mutex<PlanCache>>,
    symbolic_runs: AtomicU64,
    concrete_runs: AtomicU64,
    plans_built: AtomicU64,
    build_failures: AtomicU64,
    /// The graph's input names, in graph order.
    inputs: Vec<String>,
    /// The graph's output names, in graph order.
    outputs: Vec<String>,
}

impl TractGraph {
    /// Loads and optimises the graph at `path`; checks it has exactly the named `inputs` and
    /// every one of `outputs`. `max_plans` bounds the per-shape plans kept (0: only the
    /// symbolic plan).
    pub fn load(
        path: &Path,
        inputs: &[String],
        outputs: &[String],
        max_plans: usize,
    ) -> Result<TractGraph> {
        let ctx =
            |e: TractError| Error::backend(&format!("tract cannot load {}", path.display()), e);
        let typed = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(ctx)?
            .into_typed()
            .map_err(ctx)?
            .into_decluttered()
            .map_err(ctx)?;
        let mut symbols = Vec::new();
        for outlet in typed.input_outlets().map_err(ctx)? {
            let fact = typed.outlet_fact(*outlet).map_err(ctx)?;
            symbols.push(
                fact.shape
                    .iter()
                    .map(|d| match d {
                        TDim::Sym(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            );
        }
        let plan = typed
            .clone()
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
        let has_symbols = symbols.iter().flatten().any(Option::is_some);
        let cache = NonZeroUsize::new(max_plans)
            .filter(|_| has_symbols)
            .map(|cap| {
                // Shapes waiting for their second sighting: a few times the plans, so that a
                // stream of one-off shapes cannot evict the plans themselves.
                let seen = NonZeroUsize::new(cap.get().saturating_mul(8)).unwrap_or(cap);
                Mutex::new(PlanCache {
                    seen: LruCache::new(seen),
                    plans: LruCache::new(cap),
                })
            });
        Ok(TractGraph {
            plan,
            typed: cache.as_ref().map(|_| typed),
            symbols,
            cache,
            symbolic_runs: AtomicU64::new(0),
            concrete_runs: AtomicU64::new(0),
            plans_built: AtomicU64::new(0),
            build_failures: AtomicU64::new(0),
            inputs: order,
            outputs: names,
        })
    }

    /// Builds the plan for inputs of exactly `shapes` (graph order).
    fn build(&self, typed: &TypedModel, shapes: &ShapeKey) -> TractResult<Arc<TypedRunnableModel>> {
        let mut subs: HashMap<Symbol, TDim> = HashMap::new();
        for (axes, shape) in self.symbols.iter().zip(shapes) {
            if axes.len() != shape.len() {
                return Err(TractError::msg(format!(
                    "input of rank {} fed for rank {}",
                    shape.len(),
                    axes.len()
                )));
            }
            for (sym, &dim) in axes.iter().zip(shape) {
                if let Some(sym) = sym {
                    let dim = TDim::Val(i64::try_from(dim)?);
                    if let Some(prev) = subs.insert(sym.clone(), dim.clone()) {
                        if prev != dim {
                            return Err(TractError::msg(format!(
                                "symbol {sym} fed as both {prev} and {dim}"
                            )));
                        }
                    }
                }
            }
        }
        typed.set_symbols(&subs)?.into_optimized()?.into_runnable()
    }

    /// The plan to run inputs of `shapes` with: a per-shape plan when there is one (building
    /// it on a shape's second sighting), else the symbolic plan. The lock covers only the
    /// look-ups and inserts; building and running happen outside it.
    fn plan_for(&self, shapes: ShapeKey) -> Result<Arc<TypedRunnableModel>> {
        let (Some(cache), Some(typed)) = (&self.cache, &self.typed) else {
            return Ok(self.symbolic());
        };
        let lock = || {
            cache
                .lock()
                .map_err(|_| Error::Backend("tract plan cache lock poisoned".into()))
        };
        {
            let mut c = lock()?;
            match c.plans.get(&shapes) {
                Some(Slot::Ready(plan)) => {
                    self.concrete_runs.fetch_add(1, Ordering::Relaxed);
                    return Ok(Arc::clone(plan));
                }
                Some(Slot::Building | Slot::Failed) => return Ok(self.symbolic()),
                None => {}
            }
            if c.seen.pop(&shapes).is_none() {
                c.seen.put(shapes, ());
                return Ok(self.symbolic());
            }
            c.plans.put(shapes.clone(), Slot::Building);
        }
        let built = self.build(typed, &shapes);
        let mut c = lock()?;
        match built {
            Ok(plan) => {
                self.plans_built.fetch_add(1, Ordering::Relaxed);
                self.concrete_runs.fetch_add(1, Ordering::Relaxed);
                c.plans.put(shapes, Slot::Ready(Arc::clone(&plan)));
                Ok(plan)
            }
            Err(_) => {
                self.build_failures.fetch_add(1, Ordering::Relaxed);
                c.plans.put(shapes, Slot::Failed);
                Ok(self.symbolic())
            }
        }
    }

    fn symbolic(&self) -> Arc<TypedRunnableModel> {
        self.symbolic_runs.fetch_add(1, Ordering::Relaxed);
        Arc::clone(&self.plan)
    }
}

impl Graph for TractGraph {
    fn run(&self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>> {
        let mut values: TVec<TValue> = TVec::new();
        let mut shapes: ShapeKey = Vec::with_capacity(self.inputs.len());
        for name in &self.inputs {
            let feed = feeds
                .iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| Error::Backend(format!("no tensor fed for graph input {name:?}")))?;
            let (tensor, shape) = match feed {
                Feed::I64(_, shape, data) => (Tensor::from_shape(shape, data), shape),
                Feed::F32(_, shape, data) => (Tensor::from_shape(shape, data), shape),
            };
            let tensor = tensor.map_err(|e| Error::backend("tract input", e))?;
            shapes.push(shape.to_vec());
            values.push(tensor.into_tvalue());
        }
        let plan = self.plan_for(shapes)?;
        let results = plan
            .run(values)
            .map_err(|e| Error::backend("tract run", e))?;
        let mut out = Vec::with_capacity(outputs.len());
        for name in outputs {
            let at = self
                .outputs
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| Error::Backend(format!("no output {name:?}")))?;
            let view = results
                .get(at)
                .ok_or_else(|| Error::Backend(format!("tract returned no output {name:?}")))?
                .to_plain_array_view::<f32>()
                .map_err(|e| Error::backend(&format!("tract output {name}"), e))?;
            out.push(Fetched {
                shape: view.shape().to_vec(),
                data: view.iter().copied().collect(),
            });
        }
        Ok(out)
    }

    fn plan_stats(&self) -> PlanStats {
        let plans = self
            .cache
            .as_ref()
            .and_then(|c| c.lock().ok())
            .map_or(0, |c| {
                c.plans
                    .iter()
                    .filter(|(_, s)| matches!(s, Slot::Ready(_)))
                    .count()
            });
        PlanStats {
            symbolic_runs: self.symbolic_runs.load(Ordering::Relaxed),
            concrete_runs: self.concrete_runs.load(Ordering::Relaxed),
            plans_built: self.plans_built.load(Ordering::Relaxed),
            build_failures: self.build_failures.load(Ordering::Relaxed),
            plans,
        }
    }
}
