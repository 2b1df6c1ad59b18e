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
