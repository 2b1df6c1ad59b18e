//! The ONNX Runtime backend, through the `ort` crate with `load-dynamic`: the shared library is
//! opened at run time from an explicit path, never downloaded and never linked.
//!
//! Where the library is found, in order: the path given to [`init`] (`ATRANK_ORT_LIB` for the C
//! ABI), the environment variables `ATRANK_ORT_LIB` and `ORT_DYLIB_PATH`, then
//! `libonnxruntime.so` on the dynamic loader's search path. A missing or too-old library is an
//! [`Error::BackendUnavailable`], never a panic (`ort::init()` would panic; we use
//! `ort::init_from`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::value::TensorRef;

use super::{GpuPolicy, LoadOptions, Loaded, Scorer, Serving};
use crate::preprocess::Prepared;
use crate::spec::Spec;
use crate::{Error, Result};

/// Environment variable naming the ONNX Runtime shared library (full file name).
pub const ORT_LIB_ENV: &str = "ATRANK_ORT_LIB";
/// The library name tried when nothing else is configured.
pub const DEFAULT_ORT_LIB: &str = "libonnxruntime.so";

struct Runtime {
    env: ort::environment::Environment,
    path: PathBuf,
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

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

/// Loads ONNX Runtime once per process. Later calls return the first outcome; asking for a
/// different library after one is loaded is an error (ONNX Runtime allows one per process).
pub fn init(explicit: Option<&Path>) -> Result<&'static Path> {
    let wanted = library_path(explicit);
    let rt = RUNTIME.get_or_init(|| {
        let builder = ort::init_from(&wanted).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {:?}: {e} (set {ORT_LIB_ENV} to the full path of \
                 libonnxruntime.so.<version>, 1.{} or newer)",
                wanted.display().to_string(),
                ort::MINOR_VERSION
            )
        })?;
        let env = builder
            .with_name("atrank")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        Ok(Runtime {
            env,
            path: wanted.clone(),
        })
    });
    match rt {
        Ok(rt) if explicit.is_some() && rt.path != wanted => {
            Err(Error::BackendUnavailable(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot also load {}",
                rt.path.display(),
                wanted.display()
            )))
        }
        Ok(rt) => Ok(&rt.path),
        Err(msg) => Err(Error::BackendUnavailable(msg.clone())),
    }
}

fn environment() -> Result<&'static ort::environment::Environment> {
    init(None)?;
    match RUNTIME.get() {
        Some(Ok(rt)) => Ok(&rt.env),
        Some(Err(msg)) => Err(Error::BackendUnavailable(msg.clone())),
        None => Err(Error::BackendUnavailable(
            "ONNX Runtime is not initialised".into(),
        )),
    }
}

/// An ONNX Runtime session for the package's graph.
///
/// `ort`'s `Session::run` takes `&mut self`, so calls are serialised by a mutex here; a session
/// pool (or the raw, thread-safe `OrtSession`) is the planned next step for concurrent scoring.
pub struct OrtScorer {
    session: Mutex<Session>,
    spec: Spec,
}

/// Creates a session for the graph at `path` as `options` say (threads, GPU policy, library).
pub fn load(spec: &Spec, path: &Path, options: &LoadOptions) -> Result<Loaded> {
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
    Ok(Loaded {
        scorer: Box::new(OrtScorer {
            session: Mutex::new(session),
            spec: spec.clone(),
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

impl Scorer for OrtScorer {
    fn score(&self, p: &Prepared) -> Result<Vec<f32>> {
        let mut inputs = Vec::with_capacity(p.tensors.len());
        for t in &p.tensors {
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            let value = TensorRef::from_array_view((shape, &t.data[..]))
                .map_err(|e| Error::backend(&format!("ONNX Runtime input {}", t.name), e))?;
            inputs.push((t.name.as_str(), value));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::Backend("ONNX Runtime session mutex poisoned".into()))?;
        let outputs = session
            .run(inputs)
            .map_err(|e| Error::backend("ONNX Runtime run", e))?;
        let out = outputs
            .get(&self.spec.output)
            .ok_or_else(|| Error::Backend(format!("no output {:?}", self.spec.output)))?;
        let (shape, data) = out
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::backend("ONNX Runtime output", e))?;
        let want = [p.users as i64, p.candidates as i64];
        if shape[..] != want[..] {
            return Err(Error::Backend(format!(
                "output has shape {shape:?}, expected {want:?}"
            )));
        }
        Ok(data.to_vec())
    }
}
