//! The ONNX Runtime backend, through the `ort` crate with `load-dynamic`: the shared library is
//! opened at run time from an explicit path, never downloaded and never linked.
//!
//! Where the library is found, in order: the path given to [`init`] (`ATRANK_ORT_LIB` for the C
//! ABI), the environment variables `ATRANK_ORT_LIB` and `ORT_DYLIB_PATH`, then
//! `libonnxruntime.so` on the dynamic loader's search path. A missing or too-old library is an
//! [`Error::BackendUnavailable`], never a panic (`ort::init()` would panic; we use
//! `ort::init_from`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};

use ort::session::Session;
use ort::value::TensorRef;

use super::{Feed, Fetched, GpuPolicy, Graph, LoadOptions, Loaded, Serving};
use crate::{Error, Result};

/// Environment variable naming the ONNX Runtime shared library (full file name).
pub const ORT_LIB_ENV: &str = "ATRANK_ORT_LIB";
/// The library name tried when nothing else is configured.
pub const DEFAULT_ORT_LIB: &str = "libonnxruntime.so";

struct Runtime {
    env: ort::environment::Environment,
    path: PathBuf,
}

/// The loaded runtime; set once, by the first load that succeeds.
static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serialises load attempts. A failed attempt stores nothing, so a later load may retry with
/// another path (e.g. after fixing `ATRANK_ORT_LIB` or through the builder).
static LOADING: Mutex<()> = Mutex::new(());

/// Resolves the library path: explicit, then `ATRANK_ORT_LIB`, then `ORT_DYLIB_PATH`, then the
/// default name.
pub fn library_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    for var in [ORT_LIB_ENV, "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(v);
        }
    }
    PathBuf::from(DEFAULT_ORT_LIB)
}

/// Loads ONNX Runtime once per process: the first successful load wins, and asking for a
/// different library after that is an error (ONNX Runtime allows one per process). A failed
/// load is not remembered: the next load tries again, with whatever path it is given.
pub fn init(explicit: Option<&Path>) -> Result<&'static Path> {
    let wanted = library_path(explicit);
    let loaded = |rt: &'static Runtime| {
        if explicit.is_some() && rt.path != wanted {
            Err(Error::BackendUnavailable(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot also load {}",
                rt.path.display(),
                wanted.display()
            )))
        } else {
            Ok(rt.path.as_path())
        }
    };
    if let Some(rt) = RUNTIME.get() {
        return loaded(rt);
    }
    let _attempt = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return loaded(rt);
    }
    let builder = ort::init_from(&wanted).map_err(|e| {
        Error::BackendUnavailable(format!(
            "cannot load ONNX Runtime from {:?}: {e} (set {ORT_LIB_ENV} to the full path of \
             libonnxruntime.so.<version>, 1.{} or newer)",
            wanted.display().to_string(),
            ort::MINOR_VERSION
        ))
    })?;
    let env = builder.with_name("atrank").build().map_err(|e| {
        Error::BackendUnavailable(format!("cannot create the ONNX Runtime environment: {e}"))
    })?;
    let rt = RUNTIME.get_or_init(|| Runtime { env, path: wanted });
    Ok(rt.path.as_path())
}

fn environment() -> Result<&'static ort::environment::Environment> {
    init(None)?;
    RUNTIME
        .get()
        .map(|rt| &rt.env)
        .ok_or_else(|| Error::BackendUnavailable("ONNX Runtime is not initialised".into()))
}

/// ONNX Runtime sessions for one graph.
///
/// Runs on one session are serialised by its mutex. `ort`'s `Session::run` takes `&mut self` on
/// purpose: its maintainers report that ONNX Runtime's `Run` is not reliably thread-safe in
/// practice, whatever its documentation says (see the comment on `run_inner` in ort's
/// `session/run.rs`). Concurrency across threads therefore comes from a pool of sessions
/// ([`LoadOptions::sessions`]), each with its own copy of the weights: a call takes the first
/// free session, starting from a rotating index, and waits on one only when all are busy.
/// tract has no such limit.
pub struct OrtGraph {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    /// Sessions held by a running call ([`Graph::sessions_busy`]).
    busy: AtomicUsize,
}

/// Counts a session as busy while a call holds it.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl OrtGraph {
    /// A free session if there is one, else waits for one (the rotating start spreads waiters).
    fn session(&self) -> Result<MutexGuard<'_, Session>> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            match self.sessions[(start + k) % n].try_lock() {
                Ok(guard) => return Ok(guard),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Poisoned(_)) => break,
            }
        }
        self.sessions[start]
            .lock()
            .map_err(|_| Error::Backend("ONNX Runtime session mutex poisoned".into()))
    }
}

/// Creates a session for the graph at `path` as `options` say (threads, GPU policy, library),
/// and checks its input and output names.
pub fn load(
    path: &Path,
    inputs: &[String],
    outputs: &[String],
    options: &LoadOptions,
) -> Result<Loaded> {
    init(options.ort_library.as_deref())?;
    let cpu = || session(path, options.intra_threads, false);
    let (session, serving, fallback_reason) = match options.gpu {
        GpuPolicy::Off => (cpu()?, Serving::OrtCpu, None),
        GpuPolicy::Strict => match session(path, options.intra_threads, true) {
            Ok(s) => (s, Serving::OrtCuda, None),
            Err(e) => {
                return Err(Error::BackendUnavailable(format!(
                    "GPU requested with the strict policy: {e}"
                )))
            }
        },
        GpuPolicy::Permissive => match session(path, options.intra_threads, true) {
            Ok(s) => (s, Serving::OrtCuda, None),
            Err(e) => (cpu()?, Serving::OrtCpu, Some(e.to_string())),
        },
    };
    let have_outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    super::check_names(
        path,
        session.inputs().iter().map(|o| o.name()).collect(),
        inputs,
        &have_outputs,
        outputs,
    )?;
    // The other sessions of the pool, on what the first one ended up serving.
    let mut pool = Vec::with_capacity(options.sessions);
    pool.push(Mutex::new(session));
    for _ in 1..options.sessions {
        let s = self::session(path, options.intra_threads, serving == Serving::OrtCuda)?;
        pool.push(Mutex::new(s));
    }
    Ok(Loaded {
        graph: Box::new(OrtGraph {
            sessions: pool,
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
        }),
        serving,
        fallback_reason,
    })
}

fn session(path: &Path, threads: usize, cuda: bool) -> Result<Session> {
    let env = environment()?;
    let ctx = |e: ort::Error<_>| {
        Error::backend(&format!("ONNX Runtime cannot load {}", path.display()), e)
    };
    let mut builder = Session::builder(env)
        .map_err(|e| Error::backend("ONNX Runtime session builder", e))?
        .with_intra_threads(threads)
        .map_err(ctx)?
        .with_inter_threads(1)
        .map_err(ctx)?;
    if cuda {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| Error::backend("CUDA execution provider", e))?;
    }
    builder
        .commit_from_file(path)
        .map_err(|e| Error::backend(&format!("ONNX Runtime cannot load {}", path.display()), e))
}

impl Graph for OrtGraph {
    fn run(&self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>> {
        let mut inputs = Vec::with_capacity(feeds.len());
        for feed in feeds {
            let value = match feed {
                Feed::I64(name, shape, data) => {
                    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                    TensorRef::from_array_view((shape, *data))
                        .map_err(|e| Error::backend(&format!("ONNX Runtime input {name}"), e))?
                        .into_dyn()
                }
                Feed::F32(name, shape, data) => {
                    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                    TensorRef::from_array_view((shape, *data))
                        .map_err(|e| Error::backend(&format!("ONNX Runtime input {name}"), e))?
                        .into_dyn()
                }
            };
            inputs.push((feed.name(), value));
        }
        let mut session = self.session()?;
        let _busy = Busy::new(&self.busy);
        let results = session
            .run(inputs)
            .map_err(|e| Error::backend("ONNX Runtime run", e))?;
        let mut out = Vec::with_capacity(outputs.len());
        for name in outputs {
            let value = results
                .get(*name)
                .ok_or_else(|| Error::Backend(format!("no output {name:?}")))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::backend(&format!("ONNX Runtime output {name}"), e))?;
            let shape = shape
                .iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map_err(|_| Error::Backend(format!("output {name} has dimension {d}")))
                })
                .collect::<Result<Vec<usize>>>()?;
            out.push(Fetched {
                shape,
                data: data.to_vec(),
            });
        }
        Ok(out)
    }

    fn sessions_busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    fn sessions(&self) -> usize {
        self.sessions.len()
    }
}
