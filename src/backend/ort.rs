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

use super::{ExternalFile, Feed, Fetched, GpuPolicy, Graph, LoadOptions, Loaded, Serving};
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
    let unavailable = |why: &dyn std::fmt::Display| {
        Error::BackendUnavailable(format!(
            "cannot load ONNX Runtime from {:?}: {why} (set {ORT_LIB_ENV} to the full path of \
             libonnxruntime.so.<version>, 1.{} or newer)",
            wanted.display().to_string(),
            ort::MINOR_VERSION
        ))
    };
    let resolved = preflight(&wanted).map_err(|why| unavailable(&why))?;
    let builder = ort::init_from(&resolved).map_err(|e| unavailable(&e))?;
    let env = builder.with_name("atrank").build().map_err(|e| {
        Error::BackendUnavailable(format!("cannot create the ONNX Runtime environment: {e}"))
    })?;
    let rt = RUNTIME.get_or_init(|| Runtime { env, path: wanted });
    Ok(rt.path.as_path())
}

/// Where `ort` will look for `path`: a relative path is tried next to the executable first,
/// as `ort`'s own loader does.
fn ort_resolution(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(path)));
    match beside_exe {
        Some(p) if p.exists() => p,
        _ => path.to_path_buf(),
    }
}

/// Checks a library before `ort` may keep it for the life of the process (`ort` stores the
/// first library it opens in a process-wide cell, even one whose API turns out unusable, and
/// dereferences its version string without a NULL check):
/// - a path (not a bare name searched by the dynamic loader) must be a regular file (not a
///   FIFO, which would block, nor a device) and an ELF shared object for this machine whose
///   program headers and loadable segments fit in the file (a truncated library would fault
///   inside the loader);
/// - the library must export `OrtGetApiBase`, whose version string is non-NULL, UTF-8 and at
///   least 1.`ort::MINOR_VERSION`, and whose `GetApi` returns a non-NULL table for the API
///   version `ort` was built for.
///
/// Only then is it handed to `ort`; a library that fails is closed again, so the process can
/// still load a good one. What cannot be guarded: a library whose ELF structure is intact but
/// whose code or initialisers are broken can still fault inside the dynamic loader or in its
/// own functions.
fn preflight(path: &Path) -> std::result::Result<PathBuf, String> {
    let resolved = ort_resolution(path);
    // A bare file name is searched by the dynamic loader in the system's library path.
    let is_bare_name = !resolved.as_os_str().as_encoded_bytes().contains(&b'/');
    if !is_bare_name {
        check_elf(&resolved)?;
    }
    // SAFETY: opening a shared library runs its initialisers. The file was checked above to be
    // a well-formed ELF shared object for this machine; loading ONNX Runtime is what the caller
    // asked for.
    let lib = unsafe { libloading::Library::new(&resolved) }.map_err(|e| e.to_string())?;
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: the symbol's type is the one ONNX Runtime's C API declares for `OrtGetApiBase`.
    let get_base = unsafe { lib.get::<GetApiBase>(b"OrtGetApiBase") }
        .map_err(|_| "the library does not export OrtGetApiBase".to_string())?;
    // SAFETY: calling ONNX Runtime's documented entry point, which takes no arguments.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err("OrtGetApiBase returned NULL".into());
    }
    // SAFETY: `base` is non-NULL and points to the library's static `OrtApiBase`.
    let version = unsafe { ((*base).GetVersionString)() };
    if version.is_null() {
        return Err("GetVersionString returned NULL".into());
    }
    // SAFETY: non-NULL; ONNX Runtime returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(version) }
        .to_str()
        .map_err(|_| "the version string is not UTF-8".to_string())?
        .to_owned();
    let mut parts = version.split('.');
    let (major, minor) = (
        parts.next().and_then(|p| p.parse::<u32>().ok()),
        parts.next().and_then(|p| p.parse::<u32>().ok()),
    );
    match (major, minor) {
        (Some(1), Some(m)) if m >= ort::MINOR_VERSION => {}
        _ => {
            return Err(format!(
                "ONNX Runtime {version:?} is too old or not a version (need 1.{} or newer)",
                ort::MINOR_VERSION
            ))
        }
    }
    // SAFETY: `base` is valid (above); `GetApi` takes the API version and returns a pointer
    // to a static table, or NULL when it does not support that version.
    let api = unsafe { ((*base).GetApi)(ort::sys::ORT_API_VERSION) };
    if api.is_null() {
        return Err(format!(
            "ONNX Runtime {version} returned no API table for API version {}",
            ort::sys::ORT_API_VERSION
        ));
    }
    Ok(resolved)
}

/// Checks that `path` is a regular file holding an ELF shared object for this machine, whose
/// program and section header tables and loadable segments lie inside the file.
fn check_elf(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file (a directory, FIFO, socket or device)".into());
    }
    let len = meta.len();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut h = [0u8; 64];
    file.read_exact_at(&mut h, 0)
        .map_err(|_| format!("not an ELF file ({len} bytes: too short for an ELF header)"))?;
    let u16_at = |b: &[u8], o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    if &h[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if h[4] != 2 || h[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let machine = u16_at(&h, 18);
    let want_machine = if cfg!(target_arch = "x86_64") {
        62
    } else if cfg!(target_arch = "aarch64") {
        183
    } else {
        machine
    };
    if machine != want_machine {
        return Err(format!(
            "an ELF file for machine {machine}, not this one ({want_machine})"
        ));
    }
    if u16_at(&h, 16) != 3 {
        return Err("not an ELF shared object".into());
    }
    let (phoff, phentsize, phnum) = (u64_at(&h, 32), u16_at(&h, 54), u16_at(&h, 56));
    let (shoff, shentsize, shnum) = (u64_at(&h, 40), u16_at(&h, 58), u16_at(&h, 60));
    let truncated = || format!("truncated: {len} bytes do not hold what its ELF headers describe");
    let ph_end = phoff.checked_add(phentsize * phnum).ok_or_else(truncated)?;
    if phentsize < 56 || phnum == 0 || ph_end > len {
        return Err(truncated());
    }
    if shnum > 0
        && shoff
            .checked_add(shentsize * shnum)
            .is_none_or(|end| end > len)
    {
        return Err(truncated());
    }
    let mut ph = vec![0u8; usize::try_from(phentsize * phnum).map_err(|_| truncated())?];
    file.read_exact_at(&mut ph, phoff)
        .map_err(|_| truncated())?;
    for entry in ph.chunks_exact(usize::try_from(phentsize).map_err(|_| truncated())?) {
        let p_type = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        if p_type == 1 {
            let (offset, filesz) = (u64_at(entry, 8), u64_at(entry, 32));
            if offset.checked_add(filesz).is_none_or(|end| end > len) {
                return Err(truncated());
            }
        }
    }
    Ok(())
}

/// The process's ONNX Runtime environment (initialising the library as [`init`] with no
/// explicit path does), for tools and benches that build `ort` sessions of their own beside
/// atrank's: `ort` allows one environment per process.
pub fn environment() -> Result<&'static ort::environment::Environment> {
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
/// ([`LoadOptions::sessions`]), each with its own copy of the dense weights (a few MB; the
/// embedding tables are served from the shared mapping, see [`super::lift`]): a call takes
/// the first free session, starting from a rotating index, and waits on one only when all are
/// busy. tract has no such limit. The CUDA execution provider uses the same pool, one session
/// per concurrent call, and must: ONNX Runtime does not promise concurrent `Run` on one session
/// there (CUDA graphs, a session's own stream and arena). Each CUDA session holds its own
/// device copy of the dense weights only; the tables' rows are gathered on the host.
pub struct OrtGraph {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    /// Sessions held by a running call ([`Graph::sessions_busy`]).
    busy: AtomicUsize,
    /// The external data files the sessions read their initializers from, in place: declared
    /// after `sessions`, so dropped after them.
    _external: Vec<bytes::Bytes>,
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
    bytes: &[u8],
    external: &[ExternalFile],
    inputs: &[String],
    outputs: &[String],
    options: &LoadOptions,
) -> Result<Loaded> {
    init(options.ort_library.as_deref())?;
    let make = |cuda| self::session(path, bytes, external, options.intra_threads, cuda);
    let cpu = || make(false);
    let (session, serving, fallback_reason) = match options.gpu {
        GpuPolicy::Off => (cpu()?, Serving::OrtCpu, None),
        GpuPolicy::Strict => match make(true) {
            Ok(s) => (s, Serving::OrtCuda, None),
            Err(e) => {
                return Err(Error::BackendUnavailable(format!(
                    "GPU requested with the strict policy: {e}"
                )))
            }
        },
        GpuPolicy::Permissive => match make(true) {
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
        let s = make(serving == Serving::OrtCuda)?;
        pool.push(Mutex::new(s));
    }
    Ok(Loaded {
        graph: Box::new(OrtGraph {
            sessions: pool,
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            _external: external.iter().map(|f| f.data.clone()).collect(),
        }),
        serving,
        fallback_reason,
    })
}

/// Hands ONNX Runtime the external data files as buffers in memory
/// (`AddExternalInitializersFromMemory`, C API 18): initializers whose `location` is one of
/// the names are read from its buffer, not from a file. `ort`'s own wrapper wants an owned
/// `Arc<[u8]>` (a copy of a mapping); this passes the mapping itself, which the caller keeps
/// alive for as long as the session ([`OrtGraph`] holds a clone).
fn add_external(
    builder: &mut ort::session::builder::SessionBuilder,
    external: &[ExternalFile],
) -> Result<()> {
    use ort::AsPointer;
    if external.is_empty() {
        return Ok(());
    }
    let names = external
        .iter()
        .map(|f| std::ffi::CString::new(f.name.as_str()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::package("an external data file name contains a NUL byte"))?;
    let name_ptrs: Vec<*const ort::sys::os_char> = names.iter().map(|n| n.as_ptr()).collect();
    // ONNX Runtime declares the buffers `char *` but only reads them: it wraps each
    // initializer's range in a tensor of the graph's (constant) initializers.
    let buffers: Vec<*mut std::ffi::c_char> = external
        .iter()
        .map(|f| f.data.as_ptr().cast::<std::ffi::c_char>().cast_mut())
        .collect();
    let lengths: Vec<usize> = external.iter().map(|f| f.data.len()).collect();
    // SAFETY: the options pointer is the builder's own; the three arrays have
    // `external.len()` entries and live through the call (ONNX Runtime copies the names and
    // keeps the buffer pointers, whose memory `OrtGraph` keeps alive past its sessions).
    let status = unsafe {
        (ort::api().AddExternalInitializersFromMemory)(
            builder.ptr_mut(),
            name_ptrs.as_ptr(),
            buffers.as_ptr(),
            lengths.as_ptr(),
            external.len(),
        )
    };
    // SAFETY: `status` was just returned by an ONNX Runtime API function.
    unsafe { ort::Error::result_from_status(status) }
        .map_err(|e| Error::backend("ONNX Runtime external data", e))
}

fn session(
    path: &Path,
    bytes: &[u8],
    external: &[ExternalFile],
    threads: usize,
    cuda: bool,
) -> Result<Session> {
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
            // TF32 off: cuBLAS's TF32 mode rounds matmul inputs to 10 mantissa bits, which
            // the golden files' float32 tolerances do not cover (tests/gpu.rs).
            .with_execution_providers([ort::ep::CUDA::default()
                .with_tf32(false)
                .build()
                .error_on_failure()])
            .map_err(|e| Error::backend("CUDA execution provider", e))?;
    }
    add_external(&mut builder, external)?;
    builder
        .commit_from_memory(bytes)
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
