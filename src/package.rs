//! Reading a package's files safely: every file the spec names must be a regular file inside
//! the package directory once symlinks are resolved, no larger than a stated cap, and match the
//! size and SHA-256 that the spec's `files` manifest records. Nothing is read before those
//! checks, so a hostile package cannot make the runtime read `/dev/zero`, block on a FIFO, or
//! follow a symlink to `/etc/passwd`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::spec::FileDigest;
use crate::{Error, Result};

/// The most bytes `spec.json` may have.
pub const MAX_SPEC_BYTES: u64 = 16 << 20;
/// The most bytes one ONNX graph file may have: protobuf's own limit (2 GiB).
pub const MAX_GRAPH_BYTES: u64 = 2 << 30;
/// The most bytes one vocabulary or catalog file may have.
pub const MAX_TABLE_BYTES: u64 = 2 << 30;
/// Mapped files of at most this many bytes have their SHA-256 checked at every load; larger
/// ones only with [`VerifyHashes::All`] (docs/package-format-v3.md, "Integrity").
const ALWAYS_VERIFY_BYTES: u64 = 64 << 20;

/// Which mapped files have their SHA-256 checked at load (their size is always checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VerifyHashes {
    /// Files of at most 64 MiB (the default). Larger files are mapped and bounds-checked on
    /// every read; hashing them would read every page at each load.
    #[default]
    Small,
    /// Every file, whatever its size (reads each mapped file once at load).
    All,
}

impl VerifyHashes {
    /// Whether a file of `bytes` bytes is hashed at load.
    pub fn hashes(self, bytes: u64) -> bool {
        self == VerifyHashes::All || bytes <= ALWAYS_VERIFY_BYTES
    }
}

/// A package directory, resolved once: every file is checked against this canonical path.
#[derive(Debug, Clone)]
pub struct PackageDir {
    root: PathBuf,
}

impl PackageDir {
    /// Resolves `dir` (symlinks included) and checks that it is a directory. An empty path is
    /// refused rather than read as the current directory.
    pub fn open(dir: &Path) -> Result<PackageDir> {
        if dir.as_os_str().is_empty() {
            return Err(Error::invalid(
                "package_dir is empty (give the package directory's path)",
            ));
        }
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        if !root.is_dir() {
            return Err(Error::package(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(PackageDir { root })
    }

    /// The resolved directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` inside the package and checks it: it must exist, stay inside the package
    /// after symlinks are resolved, and be a regular file of at most `max_bytes`. Returns the
    /// resolved path and the file's size.
    pub fn resolve(&self, rel: &str, max_bytes: u64) -> Result<(PathBuf, u64)> {
        let joined = self.root.join(rel);
        let path = joined.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::package(format!("{rel}: the file is missing from the package"))
            }
            _ => Error::io(&joined, e),
        })?;
        if !path.starts_with(&self.root) {
            return Err(Error::package(format!(
                "{rel} resolves to {}, outside the package directory",
                path.display()
            )));
        }
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            return Err(Error::package(format!(
                "{rel} is not a regular file (a directory, device, FIFO or socket)"
            )));
        }
        if meta.len() > max_bytes {
            return Err(Error::package(format!(
                "{rel} has {} bytes, more than the {max_bytes} allowed",
                meta.len()
            )));
        }
        Ok((path, meta.len()))
    }

    /// Reads `rel` after [`PackageDir::resolve`]'s checks and, with `digest`, checks its size
    /// and SHA-256 against the spec's manifest.
    pub fn read(&self, rel: &str, max_bytes: u64, digest: Option<&FileDigest>) -> Result<Vec<u8>> {
        let (path, len) = self.resolve(rel, max_bytes)?;
        if let Some(d) = digest {
            if d.bytes != len {
                return Err(Error::package(format!(
                    "{rel} has {len} bytes, but the spec's manifest says {}",
                    d.bytes
                )));
            }
        }
        let file = open_regular(&path)?;
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // Read at most one byte more than the cap: a file that grew after the check is caught.
        file.take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        if bytes.len() as u64 > max_bytes {
            return Err(Error::package(format!(
                "{rel} grew past {max_bytes} bytes while being read"
            )));
        }
        if let Some(d) = digest {
            check_digest(rel, &bytes, d)?;
        }
        Ok(bytes)
    }

    /// Maps `rel` read-only after [`PackageDir::resolve`]'s checks (a regular file inside the
    /// package), checks its size against `digest` on the opened file, and its SHA-256 when
    /// `verify` is set or the file has at most 64 MiB.
    ///
    /// The package is treated as immutable while a model uses it (docs "Integrity"): a
    /// mapped file that is truncated afterwards makes the process fault (SIGBUS) on the next
    /// read of a page past the new end, as with every memory-mapped store. Deploy a new
    /// version to a new directory instead.
    pub fn map(&self, rel: &str, digest: &FileDigest, verify: bool) -> Result<memmap2::Mmap> {
        let (path, _) = self.resolve(rel, u64::MAX)?;
        let file = open_regular(&path)?;
        // The size of the file now open, not of what `resolve` saw.
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len != digest.bytes {
            return Err(Error::package(format!(
                "{rel} has {len} bytes, but the spec's manifest says {}",
                digest.bytes
            )));
        }
        if usize::try_from(len).is_err() {
            return Err(Error::package(format!(
                "{rel} has {len} bytes, more than this platform can map"
            )));
        }
        let map = map_file(&file).map_err(|e| Error::io(&path, e))?;
        if map.len() as u64 != len {
            return Err(Error::package(format!(
                "{rel} changed size while being mapped"
            )));
        }
        if verify || len <= ALWAYS_VERIFY_BYTES {
            check_digest(rel, &map, digest)?;
        }
        Ok(map)
    }

    /// [`PackageDir::read`] as UTF-8 text.
    pub fn read_text(
        &self,
        rel: &str,
        max_bytes: u64,
        digest: Option<&FileDigest>,
    ) -> Result<String> {
        let bytes = self.read(rel, max_bytes, digest)?;
        String::from_utf8(bytes).map_err(|e| {
            Error::package(format!(
                "{rel} is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ))
        })
    }
}

/// Opens `path` for reading without blocking (a FIFO swapped in after the checks cannot hang
/// the caller) and checks again, on the open file, that it is a regular file.
fn open_regular(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::package(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: memmap2's contract is that the file is not modified while mapped, which would
    // change the bytes under a `&[u8]`. A package is immutable once written (the exporter writes
    // it once; deployments write a new directory, docs "Integrity"). Every read of the map is
    // bounds-checked against the length fixed here, so the remaining hazard is a file truncated
    // behind our back: the kernel then raises SIGBUS on access past its new end, which no
    // user-space check can prevent; the docs state it.
    unsafe { memmap2::Mmap::map(file) }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    out
}

fn check_digest(rel: &str, bytes: &[u8], d: &FileDigest) -> Result<()> {
    let got = sha256_hex(bytes);
    if got != d.sha256 {
        return Err(Error::package(format!(
            "{rel}: SHA-256 {got} differs from the spec's manifest ({}): the file does not \
             belong to this package",
            d.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> FileDigest {
        FileDigest {
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
        }
    }

    fn package() -> (PathBuf, PackageDir) {
        let dir = std::env::temp_dir().join(format!(
            "atrank-map-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("vocab")).unwrap();
        let pkg = PackageDir::open(&dir).unwrap();
        (dir, pkg)
    }

    fn message<T>(r: Result<T>) -> String {
        match r {
            Err(e) => {
                assert_eq!(e.code(), crate::ErrorCode::InvalidPackage, "{e}");
                e.to_string()
            }
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn map_checks_like_read() {
        let (dir, pkg) = package();
        std::fs::write(dir.join("vocab/a.atv"), b"hello").unwrap();
        let good = digest(b"hello");
        assert_eq!(&pkg.map("vocab/a.atv", &good, false).unwrap()[..], b"hello");
        // Size, then hash (checked for small files even without `verify`).
        let longer = FileDigest {
            bytes: 6,
            ..good.clone()
        };
        assert!(message(pkg.map("vocab/a.atv", &longer, false)).contains("5 bytes"));
        let other = FileDigest {
            bytes: 5,
            ..digest(b"world")
        };
        assert!(message(pkg.map("vocab/a.atv", &other, false)).contains("SHA-256"));
        // An empty file maps to an empty slice.
        std::fs::write(dir.join("vocab/e.atv"), b"").unwrap();
        assert!(pkg
            .map("vocab/e.atv", &digest(b""), true)
            .unwrap()
            .is_empty());
        // Missing, a directory, a symlink out of the package.
        assert!(message(pkg.map("vocab/none.atv", &good, false)).contains("missing"));
        assert!(message(pkg.map("vocab", &good, false)).contains("not a regular file"));
        #[cfg(unix)]
        {
            let outside =
                std::env::temp_dir().join(format!("atrank-outside-{}", std::process::id()));
            std::fs::write(&outside, b"hello").unwrap();
            std::os::unix::fs::symlink(&outside, dir.join("vocab/link.atv")).unwrap();
            assert!(message(pkg.map("vocab/link.atv", &good, false)).contains("outside"));
            let _ = std::fs::remove_file(&outside);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn large_files_are_hashed_only_when_asked() {
        let (dir, pkg) = package();
        // A sparse file one byte over the threshold: all zeros, no disk used.
        let len = ALWAYS_VERIFY_BYTES + 1;
        let f = File::create(dir.join("big.bin")).unwrap();
        f.set_len(len).unwrap();
        drop(f);
        let wrong = FileDigest {
            sha256: "0".repeat(64),
            bytes: len,
        };
        assert_eq!(pkg.map("big.bin", &wrong, false).unwrap().len() as u64, len);
        assert!(message(pkg.map("big.bin", &wrong, true)).contains("SHA-256"));
        assert!(!VerifyHashes::Small.hashes(len) && VerifyHashes::Small.hashes(len - 1));
        assert!(VerifyHashes::All.hashes(len));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
