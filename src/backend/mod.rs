//! Inference backends. The split follows tract's Runtime -> Runnable -> State design:
//! [`load_graph`] loads an ONNX graph once into a shareable [`Graph`], and per-call state stays
//! inside [`Graph::run`]. A model uses one graph (`model.onnx`), or with the user-encoding cache
//! also the split pair (`encoder.onnx`, `scorer.onnx`).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{Error, Result};

pub mod lift;
pub mod onnx_check;
#[cfg(feature = "backend-ort")]
#[allow(unsafe_code)]
pub mod ort;
#[cfg(feature = "backend-tract")]
pub mod tract;
#[cfg(feature = "backend-tract")]
pub mod tract_attention;
#[cfg(feature = "backend-tract")]
pub mod tract_norm;

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

/// The most ONNX Runtime sessions one model may hold ([`LoadOptions::sessions`]).
pub const MAX_SESSIONS: usize = 64;

/// Shape-specialised tract plans a graph keeps by default ([`LoadOptions::tract_plans`]).
pub const DEFAULT_TRACT_PLANS: usize = 32;
/// The most shape-specialised tract plans a graph may keep ([`LoadOptions::tract_plans`]).
pub const MAX_TRACT_PLANS: usize = 4096;
/// The most user encodings a model may cache ([`LoadOptions::cache_capacity`]).
pub const MAX_CACHE_ENTRIES: usize = 1 << 20;
/// Bytes of user encodings a model caches by default ([`LoadOptions::cache_bytes`]).
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;
/// Candidate rows one graph run of `Model::score_batch` takes by default
/// ([`LoadOptions::batch_rows`]).
pub const DEFAULT_BATCH_ROWS: usize = 1024;

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The inference engine.
    pub backend: Backend,
    /// Intra-op threads for this model's ONNX Runtime session (at least 1). Set it so that
    /// threads per model x models x concurrent callers does not oversubscribe the host. tract
    /// runs each call on the calling thread and ignores it.
    pub intra_threads: usize,
    /// ONNX Runtime sessions for this model (1 ..= [`MAX_SESSIONS`]). ONNX Runtime's `Run` is
    /// not reliably thread-safe on one session, so calls on one session are serialised;
    /// concurrent callers spread over the sessions instead. Each session holds its own copy of
    /// the dense weights (a few MB for the exporter's models); the embedding tables are not
    /// copied at all ([`LoadOptions::lift_tables`]), so a session costs the same at 10^7 items
    /// as at 10^3. tract ignores it: its plan is shared and runs on the calling thread.
    pub sessions: usize,
    /// GPU use (ONNX Runtime only).
    pub gpu: GpuPolicy,
    /// Most user encodings a model keeps for [`crate::Model::score_cached`] (packages with the
    /// split graphs only), at most [`MAX_CACHE_ENTRIES`]; 0 turns the cache, and loading the
    /// split graphs, off.
    pub cache_capacity: usize,
    /// Most bytes of user encodings the cache holds (default [`DEFAULT_CACHE_BYTES`]); the
    /// least recently used are evicted to stay under it. Bounds the cache's memory whatever
    /// the histories' lengths.
    pub cache_bytes: usize,
    /// Most tract plans specialised to exact input shapes that each graph keeps (tract only;
    /// default [`DEFAULT_TRACT_PLANS`]). A shape's first call builds its own plan, which tract
    /// optimises further than the plan with symbolic dimensions; later calls reuse it. The
    /// model pads histories, candidate lists and batches up to a power of two so that shapes
    /// repeat. The same shape always runs the same plan, so scores never depend on earlier
    /// calls. 0: only the symbolic plan, and inputs padded to the batch's longest only.
    pub tract_plans: usize,
    /// Run each attention core of the exporter's graphs (`softmax(q k^T * scale) v`) as one
    /// kernel of atrank's own instead of tract's four nodes (tract only, on x86-64 CPUs with
    /// AVX2 and FMA; see [`tract_attention`]): 1.2-1.7x faster at the paper's size
    /// (docs/benchmarks.md). The same function within float32 rounding (docs/tolerances.md); a
    /// graph whose attention does not have the exporter's form, or a CPU without those
    /// instructions, runs on tract's nodes. [`PlanStats::fused_attention`] counts the cores
    /// replaced.
    ///
    /// Default: true in optimised builds, false in builds with debug assertions (cargo's dev
    /// profile), where the kernel is compiled without optimisation and runs about 5x slower
    /// than tract's nodes, which atrank's own dev profile compiles at opt-level 1. `false`:
    /// tract's own nodes, for comparison.
    pub tract_fused_attention: bool,
    /// Run each layer normalisation of the exporter's graphs (and the residual sum feeding
    /// it) as one kernel of atrank's own instead of tract's six or seven nodes (tract only, on
    /// x86-64 CPUs with AVX2 and FMA, where tract's own `RmsNorm` runs scalar; see
    /// [`tract_norm`]). The same function within float32 rounding (docs/tolerances.md);
    /// [`PlanStats::fused_layer_norm`] counts the normalisations replaced. Default: as
    /// [`LoadOptions::tract_fused_attention`], and for the same reason.
    pub tract_fused_layer_norm: bool,
    /// The ONNX Runtime shared library; `None`: `ATRANK_ORT_LIB`, `ORT_DYLIB_PATH`, then
    /// `libonnxruntime.so` (see [`ort::library_path`]).
    pub ort_library: Option<PathBuf>,
    /// Which memory-mapped package files (vocabularies, catalogs, external data) have their
    /// SHA-256 checked at load: files of at most 64 MiB (default), or all of them. Sizes are
    /// always checked.
    pub verify_hashes: crate::package::VerifyHashes,
    /// Serve the embedding lookups (`Gather` of an external-data table by an input) from the
    /// mapped `tables.bin` instead of handing the tables to the engine (default true; see
    /// [`lift`]): every graph, session and process then shares one read-only mapping of the
    /// tables, and only the rows requests touch become resident. `false` gives the engine its
    /// own copy of every table per graph and session (for comparison).
    pub lift_tables: bool,
    /// Give the candidates the user already touched the score `f32::NEG_INFINITY` (default
    /// false: every candidate gets the model's score). A candidate counts as touched when one
    /// of the request's behaviors in the target group has its id, whatever the action and the
    /// timestamp, including behaviors beyond `max_history` that the model itself does not see.
    /// A reranker that sorts by score then puts them last; `sigmoid(-inf)` is 0.
    pub exclude_seen: bool,
    /// The most candidate rows (requests times the longest candidate list among them) that
    /// one graph run of `Model::score_batch` takes (default [`DEFAULT_BATCH_ROWS`]); a batch
    /// with more runs in several, and a request with more candidates than this runs alone.
    /// Every tensor over the candidates then stays about the size of a core's cache (1024
    /// rows of hidden 128 are 512 KiB). At the paper's size, 64 requests of 1,000 candidates
    /// in one run scored 343k candidates/s per thread on ONNX Runtime and 148k on tract; one
    /// request per run, 471k and 388k (docs/benchmarks.md, session 15). 0: no limit.
    pub batch_rows: usize,
}

impl LoadOptions {
    /// Defaults for `backend`: 1 intra-op thread, 1 session, CPU only, a cache of 1024 user encodings,
    /// [`DEFAULT_TRACT_PLANS`] shape-specialised tract plans per graph, tract's fused attention
    /// and layer-norm kernels in optimised builds ([`LoadOptions::tract_fused_attention`]), the library from
    /// the environment, tables lifted, seen candidates scored like any other.
    pub fn new(backend: Backend) -> Self {
        LoadOptions {
            backend,
            intra_threads: 1,
            sessions: 1,
            gpu: GpuPolicy::Off,
            cache_capacity: 1024,
            cache_bytes: DEFAULT_CACHE_BYTES,
            tract_plans: DEFAULT_TRACT_PLANS,
            tract_fused_attention: !cfg!(debug_assertions),
            tract_fused_layer_norm: !cfg!(debug_assertions),
            ort_library: None,
            verify_hashes: crate::package::VerifyHashes::Small,
            lift_tables: true,
            exclude_seen: false,
            batch_rows: DEFAULT_BATCH_ROWS,
        }
    }
}

/// One input tensor of a graph run.
#[derive(Debug, Clone, Copy)]
pub enum Feed<'a> {
    /// An int64 tensor: name, shape, row-major data.
    I64(&'a str, &'a [usize], &'a [i64]),
    /// A float32 tensor: name, shape, row-major data.
    F32(&'a str, &'a [usize], &'a [f32]),
}

impl Feed<'_> {
    /// The graph input this feeds.
    pub fn name(&self) -> &str {
        match self {
            Feed::I64(n, _, _) | Feed::F32(n, _, _) => n,
        }
    }
}

/// One float32 output of a graph run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

/// Counters of a graph's shape-specialised plans (tract; all zero on ONNX Runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanStats {
    /// Runs on the plan with symbolic dimensions.
    pub symbolic_runs: u64,
    /// Runs on a plan specialised to the inputs' exact shapes.
    pub concrete_runs: u64,
    /// Shape-specialised plans built (evicted ones included).
    pub plans_built: u64,
    /// Shapes whose specialised plan failed to build (they run the symbolic plan).
    pub build_failures: u64,
    /// Shape-specialised plans held now.
    pub plans: usize,
    /// Attention cores that run as atrank's fused kernel
    /// ([`LoadOptions::tract_fused_attention`]), summed over the graphs.
    pub fused_attention: usize,
    /// Layer normalisations that run as atrank's fused kernel
    /// ([`LoadOptions::tract_fused_layer_norm`]), summed over the graphs.
    pub fused_layer_norm: usize,
}

impl std::ops::Add for PlanStats {
    type Output = PlanStats;
    fn add(self, o: PlanStats) -> PlanStats {
        PlanStats {
            symbolic_runs: self.symbolic_runs + o.symbolic_runs,
            concrete_runs: self.concrete_runs + o.concrete_runs,
            plans_built: self.plans_built + o.plans_built,
            build_failures: self.build_failures + o.build_failures,
            plans: self.plans + o.plans,
            fused_attention: self.fused_attention + o.fused_attention,
            fused_layer_norm: self.fused_layer_norm + o.fused_layer_norm,
        }
    }
}

/// A loaded graph, ready to run from any number of threads.
pub trait Graph: Send + Sync {
    /// Runs the graph on `feeds` (any order, by name) and returns the named float32 outputs.
    fn run(&self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>>;

    /// Counters of the graph's shape-specialised plans (none by default).
    fn plan_stats(&self) -> PlanStats {
        PlanStats::default()
    }

    /// ONNX Runtime sessions running this graph now (none by default).
    fn sessions_busy(&self) -> usize {
        0
    }

    /// ONNX Runtime sessions this graph holds (none by default).
    fn sessions(&self) -> usize {
        0
    }
}

/// A file holding external data of a graph (ONNX `data_location = EXTERNAL`), given to
/// [`load_graph`] by the caller rather than opened by the backend: the name the graph's
/// initializers give as their `location` (`tables.bin`), and the file's bytes, normally a
/// read-only memory map of it (`Bytes::from_owner(mmap)`). ONNX Runtime keeps a clone (no
/// copy) for as long as the graph lives, so the bytes must stay unchanged that long.
#[derive(Debug, Clone)]
pub struct ExternalFile {
    /// The name initializers give as their external data `location`.
    pub name: String,
    /// The whole file.
    pub data: Bytes,
}

/// A loaded graph and what serves it.
pub struct Loaded {
    /// The graph.
    pub graph: Box<dyn Graph>,
    /// What runs the graph.
    pub serving: Serving,
    /// Why a permissive GPU request fell back to the CPU.
    pub fallback_reason: Option<String>,
}

/// Checks that a graph file has exactly the inputs `want` and at least the outputs
/// `want_outputs`; the error names the file and both lists.
pub(crate) fn check_names(
    path: &Path,
    have: Vec<&str>,
    want: &[String],
    have_outputs: &[&str],
    want_outputs: &[String],
) -> Result<()> {
    let mut have = have;
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    have.sort_unstable();
    want.sort_unstable();
    if have != want {
        return Err(Error::package(format!(
            "{}: graph inputs {have:?} differ from the spec's {want:?}",
            path.display()
        )));
    }
    for o in want_outputs {
        if !have_outputs.contains(&o.as_str()) {
            return Err(Error::package(format!(
                "{}: graph has no output {o:?} ({have_outputs:?})",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The checks [`load_graph`] makes of options before any graph is touched.
pub(crate) fn check_options(options: &LoadOptions) -> Result<()> {
    if options.intra_threads == 0 {
        return Err(Error::invalid("intra_threads must be at least 1"));
    }
    if options.sessions == 0 || options.sessions > MAX_SESSIONS {
        return Err(Error::invalid(format!(
            "sessions is {}; it must be 1..={MAX_SESSIONS}",
            options.sessions
        )));
    }
    if options.cache_capacity > MAX_CACHE_ENTRIES {
        return Err(Error::invalid(format!(
            "cache_capacity is {}; it must be 0..={MAX_CACHE_ENTRIES}",
            options.cache_capacity
        )));
    }
    if options.tract_plans > MAX_TRACT_PLANS {
        return Err(Error::invalid(format!(
            "tract_plans is {}; it must be 0..={MAX_TRACT_PLANS}",
            options.tract_plans
        )));
    }
    Ok(())
}

/// Loads an ONNX graph, already read from the package (`path` names it in messages) and
/// checked by [`onnx_check::check`], into the chosen backend. `external` holds the files its
/// initializers may keep their data in (the spec's `graph.external_data`, mapped); `inputs`
/// and `outputs` are the names the graph must have.
///
/// Whatever the caller checked, every external data reference of the graph is checked here
/// again against `external` ([`onnx_check::check_external_refs`]) before a backend parses it,
/// so neither backend ever opens a file or reads outside the given bytes. Then, with
/// [`LoadOptions::lift_tables`], the embedding lookups are taken out of the graph ([`lift`])
/// and served from `external`; the engine gets the remaining (dense) weights: ONNX Runtime
/// from `external` through `AddExternalInitializersFromMemory` (it copies them into the
/// session), tract in a copy of the graph with them inlined.
pub fn load_graph(
    options: &LoadOptions,
    path: &Path,
    bytes: &Bytes,
    external: &[ExternalFile],
    inputs: &[String],
    outputs: &[String],
) -> Result<Loaded> {
    check_options(options)?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let sizes: Vec<(&str, u64)> = external
        .iter()
        .map(|f| (f.name.as_str(), f.data.len() as u64))
        .collect();
    onnx_check::check_external_refs(&file, bytes.clone(), &sizes)?;
    let (bytes, lifted) = if options.lift_tables {
        lift::lift(bytes, external)?
    } else {
        (bytes.clone(), Vec::new())
    };
    let mut all_inputs = inputs.to_vec();
    all_inputs.extend(lifted.iter().map(|l| l.output.clone()));
    let mut loaded = load_engine(options, path, &bytes, external, &all_inputs, outputs)?;
    if !lifted.is_empty() {
        loaded.graph = Box::new(lift::LiftedGraph::new(loaded.graph, lifted, external));
    }
    Ok(loaded)
}

#[cfg_attr(
    not(any(feature = "backend-ort", feature = "backend-tract")),
    allow(unused_variables)
)]
fn load_engine(
    options: &LoadOptions,
    path: &Path,
    bytes: &Bytes,
    external: &[ExternalFile],
    inputs: &[String],
    outputs: &[String],
) -> Result<Loaded> {
    match options.backend {
        #[cfg(feature = "backend-ort")]
        Backend::Ort => ort::load(path, bytes, external, inputs, outputs, options),
        #[cfg(feature = "backend-tract")]
        Backend::Tract => {
            if options.gpu == GpuPolicy::Strict {
                return Err(Error::BackendUnavailable(
                    "GPU requested with the strict policy, but tract runs on the CPU only".into(),
                ));
            }
            Ok(Loaded {
                graph: Box::new(tract::TractGraph::load(
                    path,
                    bytes,
                    external,
                    inputs,
                    outputs,
                    options.tract_plans,
                    tract::Fusion {
                        attention: options.tract_fused_attention,
                        layer_norm: options.tract_fused_layer_norm,
                    },
                )?),
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
