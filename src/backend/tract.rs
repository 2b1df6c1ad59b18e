//! The tract backend: pure Rust, CPU. Plans are immutable and shared; each call spawns its own
//! state, so any number of threads can run a graph at once.
//!
//! A graph keeps one optimised plan with symbolic dimensions (batch, history length,
//! candidates), which runs any input shape, and a bounded cache of plans specialised to exact
//! input shapes. tract optimises a plan with concrete dimensions much further (about 2x faster
//! on the exporter's models). Building one costs a few milliseconds, paid by a shape's first
//! call; callers that pad inputs to a few bucketed shapes (see [`crate::Model`]) then hit the
//! cache. A shape always runs the same plan (concurrent first callers wait for one build), so
//! scores never depend on which calls came before.
//!
//! Before any plan is built, each attention core and each layer normalisation of the exporter's
//! graphs may be replaced by atrank's own fused kernels ([`super::tract_attention`],
//! `LoadOptions::tract_fused_attention`; [`super::tract_norm`],
//! `LoadOptions::tract_fused_layer_norm`).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use lru::LruCache;
use tract_onnx::prelude::*;

use super::{ExternalFile, Feed, Fetched, Graph, PlanStats};
use crate::{Error, Result};

/// tract's declutter passes without `ConcatThenEinsum`, when `split_concat` is false.
///
/// That pass rewrites a matrix product whose summed axis comes from a `Concat` into one
/// product per concatenated part plus their sum. The exporter's graphs concatenate embeddings
/// before each projection (a candidate's id and category rows, a behavior's embeddings and
/// one-hot time and action), so tract ran the paper-size query projection as two products
/// with K = 64 and the behavior projection as four, down to K = 3, each with its own packing.
/// One product over the concatenated rows ran faster (docs/benchmarks.md, session 15).
pub fn declutter(model: &mut TypedModel, split_concat: bool) -> TractResult<()> {
    use tract_onnx::tract_core::optim::Optimizer;
    let mut passes = Optimizer::declutter();
    if !split_concat {
        // the pass types are private to tract-core; their Debug names are not
        passes
            .passes
            .retain(|p| !format!("{p:?}").starts_with("ConcatThenEinsum"));
    }
    passes.optimize(model)
}

/// `into_optimized` with [`declutter`]'s choice: declutter, then tract's code generation.
pub fn optimized(mut model: TypedModel, split_concat: bool) -> TractResult<TypedModel> {
    declutter(&mut model, split_concat)?;
    model.optimize()?;
    Ok(model)
}

/// The input shapes of one run, in graph order.
type ShapeKey = Vec<Vec<usize>>;

/// A shape's entry: its plan once built (`None`: building failed, the shape runs the symbolic
/// plan). The first caller builds it; concurrent callers of the same shape wait for that build
/// rather than run the symbolic plan, so a given input shape always runs the same plan and the
/// same request always gets the same scores, bit for bit.
type Slot = Arc<OnceLock<Option<Arc<TypedRunnableModel>>>>;
/// A tract plan for one graph.
pub struct TractGraph {
    /// The optimised plan with symbolic dimensions: runs every shape.
    plan: Arc<TypedRunnableModel>,
    /// The decluttered model before optimisation, from which per-shape plans are built;
    /// `None` when the cache is off.
    typed: Option<TypedModel>,
    /// Per input (graph order), per axis: the symbol that axis carries, if it is a plain one.
    symbols: Vec<Vec<Option<Symbol>>>,
    cache: Option<Mutex<LruCache<ShapeKey, Slot>>>,
    symbolic_runs: AtomicU64,
    concrete_runs: AtomicU64,
    plans_built: AtomicU64,
    build_failures: AtomicU64,
    /// The graph's input names, in graph order.
    inputs: Vec<String>,
    /// The graph's output names, in graph order.
    outputs: Vec<String>,
    /// Attention cores replaced by atrank's fused kernel ([`super::tract_attention`]).
    fused_attention: usize,
    /// Layer normalisations replaced by atrank's fused kernel ([`super::tract_norm`]).
    fused_layer_norm: usize,
}

/// Which of atrank's own kernels replace tract's nodes in a graph (each only where the graph
/// has the exporter's form and the CPU runs the kernel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fusion {
    /// Attention cores ([`super::tract_attention`]).
    pub attention: bool,
    /// Layer normalisations ([`super::tract_norm`]).
    pub layer_norm: bool,
}

impl TractGraph {
    /// Loads and optimises the graph `bytes` (read from `path`, which names it in messages); checks it has exactly the named `inputs` and
    /// every one of `outputs`. `max_plans` bounds the per-shape plans kept (0: only the
    /// symbolic plan); `fuse` says which of the exporter's attention cores and layer
    /// normalisations run as atrank's own kernels ([`Fusion`]).
    ///
    /// tract's ONNX import and optimiser panic on some malformed graphs that pass the runtime's
    /// own checks (fuzzing found one: an `Unsqueeze` axis beyond the rank panics in tract-hir's
    /// `AddDims` during shape inference, tests/robustness.rs). A package must never take the
    /// host down, so such a panic is caught here and becomes a load error naming the file.
    pub fn load(
        path: &Path,
        bytes: &[u8],
        external: &[ExternalFile],
        inputs: &[String],
        outputs: &[String],
        max_plans: usize,
        fuse: Fusion,
    ) -> Result<TractGraph> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::load_unguarded(path, bytes, external, inputs, outputs, max_plans, fuse)
        }))
        .unwrap_or_else(|p| {
            Err(Error::Backend(format!(
                "tract cannot load {}: it panicked: {}",
                path.display(),
                crate::error::panic_message(&*p)
            )))
        })
    }

    fn load_unguarded(
        path: &Path,
        bytes: &[u8],
        external: &[ExternalFile],
        inputs: &[String],
        outputs: &[String],
        max_plans: usize,
        fuse: Fusion,
    ) -> Result<TractGraph> {
        let ctx =
            |e: TractError| Error::backend(&format!("tract cannot load {}", path.display()), e);
        let onnx = tract_onnx::onnx();
        let mut proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(ctx)?;
        inline_external(path, &mut proto, external)?;
        let model = onnx.model_for_proto_model(&proto).map_err(ctx);
        drop(proto);
        let mut typed = model?.into_typed().map_err(ctx)?;
        declutter(&mut typed, false).map_err(ctx)?;
        // before the symbolic plan and every shape's plan are built from `typed`
        let fused_attention = if fuse.attention {
            super::tract_attention::fuse(&mut typed).map_err(ctx)?
        } else {
            0
        };
        let fused_layer_norm = if fuse.layer_norm {
            super::tract_norm::fuse(&mut typed).map_err(ctx)?
        } else {
            0
        };
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
        let plan = optimized(typed.clone(), false)
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
            .map(|cap| Mutex::new(LruCache::new(cap)));
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
            fused_attention,
            fused_layer_norm,
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
        // A panic in tract's optimiser (see `load`) fails this shape's plan; the symbolic plan
        // serves it instead.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            optimized(typed.set_symbols(&subs)?, false)?.into_runnable()
        }))
        .unwrap_or_else(|p| {
            Err(TractError::msg(format!(
                "tract panicked building a plan: {}",
                crate::error::panic_message(&*p)
            )))
        })
    }

    /// The plan to run inputs of `shapes` with: the shape's own plan (built on its first
    /// sighting; an evicted plan is rebuilt the same way, so results do not depend on the
    /// cache's history), or the symbolic plan when that shape's plan cannot be built. The lock
    /// covers only the look-up; building and running happen outside it.
    fn plan_for(&self, shapes: ShapeKey) -> Result<Arc<TypedRunnableModel>> {
        let (Some(cache), Some(typed)) = (&self.cache, &self.typed) else {
            return Ok(self.symbolic());
        };
        let slot: Slot = {
            let mut c = cache
                .lock()
                .map_err(|_| Error::Backend("tract plan cache lock poisoned".into()))?;
            match c.get(&shapes) {
                Some(slot) => Arc::clone(slot),
                None => {
                    let slot = Slot::default();
                    c.put(shapes.clone(), Arc::clone(&slot));
                    slot
                }
            }
        };
        let plan = slot.get_or_init(|| match self.build(typed, &shapes) {
            Ok(plan) => {
                self.plans_built.fetch_add(1, Ordering::Relaxed);
                Some(plan)
            }
            Err(_) => {
                self.build_failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        });
        match plan {
            Some(plan) => {
                self.concrete_runs.fetch_add(1, Ordering::Relaxed);
                Ok(Arc::clone(plan))
            }
            None => Ok(self.symbolic()),
        }
    }

    fn symbolic(&self) -> Arc<TypedRunnableModel> {
        self.symbolic_runs.fetch_add(1, Ordering::Relaxed);
        Arc::clone(&self.plan)
    }
}

/// Replaces the external data references of the graph's initializers by the bytes they name
/// in `external` (as `raw_data`): tract resolves a `location` only as a path on disk, next to
/// a model file, so it is given a graph with the data inline instead. This copies each tensor
/// once into the protobuf; tract copies it again into its own tensor while parsing, and the
/// protobuf copy is dropped right after. The references were checked by
/// [`super::onnx_check::check_external_refs`]; a reference that does not fit is still an
/// error here, never an out-of-bounds read.
fn inline_external(
    path: &Path,
    proto: &mut tract_onnx::pb::ModelProto,
    external: &[ExternalFile],
) -> Result<()> {
    use tract_onnx::pb::tensor_proto::DataLocation;
    let Some(graph) = proto.graph.as_mut() else {
        return Ok(());
    };
    for t in &mut graph.initializer {
        if t.data_location != Some(DataLocation::External as i32) {
            continue;
        }
        let value = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let bad = || {
            Error::package(format!(
                "{}: initializer {:?} has an unchecked external data reference",
                path.display(),
                t.name
            ))
        };
        let file = value("location")
            .and_then(|l| external.iter().find(|f| f.name == l))
            .ok_or_else(bad)?;
        let offset: usize = value("offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        let length: usize = value("length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        let data = offset
            .checked_add(length)
            .and_then(|end| file.data.get(offset..end))
            .ok_or_else(bad)?;
        t.raw_data = data.to_vec();
        t.data_location = None;
        t.external_data.clear();
    }
    Ok(())
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
        // tract's kernels assert on some malformed inputs (e.g. a Gather index past its table)
        // rather than return an error. The load-time checks rule out the cases known to reach
        // them; should another slip through, it is this call's error, not the host's crash.
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(values)))
            .map_err(|p| {
                Error::Backend(format!(
                    "tract run panicked: {}",
                    crate::error::panic_message(&*p)
                ))
            })?
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
                c.iter()
                    .filter(|(_, s)| matches!(s.get(), Some(Some(_))))
                    .count()
            });
        PlanStats {
            symbolic_runs: self.symbolic_runs.load(Ordering::Relaxed),
            concrete_runs: self.concrete_runs.load(Ordering::Relaxed),
            plans_built: self.plans_built.load(Ordering::Relaxed),
            build_failures: self.build_failures.load(Ordering::Relaxed),
            plans,
            fused_attention: self.fused_attention,
            fused_layer_norm: self.fused_layer_norm,
        }
    }
}
