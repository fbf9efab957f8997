//! Crash-safe writes and size-capped reads for state, configuration and secret files.
//! A reader sees either the old content or the new content of a file, never a mix.
//!
//! [`write_atomic`] writes a temporary file in the target's directory, fsyncs it, renames it over
//! the target and fsyncs the directory so the rename itself survives a crash. The mode is set on
//! the temporary file before any byte is written, so a secret is never readable by others, not
//! even for an instant. A symlink at the target is replaced, not followed: following it would
//! let whoever controls the link choose where secrets land.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// File mode for secrets: owner read/write only.
pub const SECRET_MODE: u32 = 0o600;

/// Why a file operation failed. Variants name the path and the operation; never the content.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileError {
    /// An I/O operation failed.
    #[error("could not {op} {path}: {source}")]
    Io {
        /// What we were doing (`create`, `write`, `rename`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// [`write_new_secret`] found the file already present and left it untouched.
    #[error("{path} already exists; refusing to overwrite it (remove it first if it should be replaced)")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A file was larger than the caller's cap.
    #[error("{path} is too large: {size} bytes or more, the limit is {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Bytes seen (at least this many).
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The path has no file name component (for example `/` or `..`).
    #[error("{path} does not name a file")]
    NoFileName {
        /// The path.
        path: PathBuf,
    },
    /// The path exists but is not a regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
}

impl FileError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        FileError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Atomically replaces (or creates) `path` with `bytes`, leaving it with permission bits `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let (tmp, _dir) = write_temp(path, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(FileError::io("rename into place", path, e));
    }
    sync_parent(path)
}

/// [`write_atomic`] with mode 0600, for tokens, seeds, private keys and configs holding them.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic(path, bytes, SECRET_MODE)
}

/// Like [`write_secret`] but fails with [`FileError::AlreadyExists`] if `path` exists.
///
/// The check and the creation are one step (a hard link of the finished temporary file), so
/// two processes racing to create the same key cannot both succeed or overwrite each other.
pub fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(FileError::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let (tmp, _dir) = write_temp(path, bytes, SECRET_MODE)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(FileError::AlreadyExists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(FileError::io("create", path, e)),
    }
}

/// The path to write when `path` may be a symlink the operator set up on purpose (upstream
/// writes a server's config to the link's target, spec §4.11): the fully resolved target if
/// `path` is a symlink, else `path` itself. Secrets should not use this; see the module docs.
pub fn resolve_symlink(path: &Path) -> Result<PathBuf, FileError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| FileError::io("resolve symlink", path, e))
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// Reads a whole regular file, refusing files larger than `max_bytes`.
///
/// The cap is enforced while reading, not only from metadata, so a file that grows while we
/// read it (or a special file reporting size 0) cannot make us allocate without bound.
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileError> {
    let file = File::open(path).map_err(|e| FileError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| FileError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > max_bytes {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max: max_bytes,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| FileError::io("read", path, e))?;
    if buf.len() as u64 > max_bytes {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
            max: max_bytes,
        });
    }
    Ok(buf)
}

/// [`read_capped`] for text files: the content must be UTF-8.
pub fn read_capped_string(path: &Path, max_bytes: u64) -> Result<String, FileError> {
    let bytes = read_capped(path, max_bytes)?;
    String::from_utf8(bytes).map_err(|e| {
        FileError::io(
            "decode",
            path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            ),
        )
    })
}

/// Writes and fsyncs a temporary sibling of `path`; returns its path and the parent directory.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<(PathBuf, PathBuf), FileError> {
    let name = path.file_name().ok_or_else(|| FileError::NoFileName {
        path: path.to_path_buf(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tmp, mut file) = create_temp(&dir, &name.to_string_lossy(), mode)?;
    let result = (|| {
        file.write_all(bytes)
            .map_err(|e| FileError::io("write", &tmp, e))?;
        set_mode(&file, mode).map_err(|e| FileError::io("set permissions on", &tmp, e))?;
        file.sync_all().map_err(|e| FileError::io("fsync", &tmp, e))
    })();
    if let Err(e) = result {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((tmp, dir))
}

fn create_temp(dir: &Path, name: &str, mode: u32) -> Result<(PathBuf, File), FileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last_err = None;
    for _ in 0..16 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let unique = format!(
            ".{name}.tmp.{}.{}.{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = dir.join(unique);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Restrict from the first instant; the umask may only remove bits, so the exact
            // mode is set again after writing.
            options.mode(mode & 0o700);
        }
        #[cfg(not(unix))]
        let _ = mode;
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(FileError::io("create a temporary file in", dir, e)),
        }
    }
    Err(FileError::io(
        "create a temporary file in",
        dir,
        last_err.unwrap_or_else(|| io::Error::other("no unique name found")),
    ))
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

fn sync_parent(path: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FileError::io("fsync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect()
    }

    #[test]
    fn write_atomic_creates_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"{}", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(mode_of(&path), 0o644);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn write_atomic_replaces_existing_file_with_a_new_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        fs::write(&path, b"old content that is longer").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        // A reader holding the old file keeps seeing the old bytes: the file was replaced, not
        // truncated and rewritten.
        let mut held = File::open(&path).unwrap();
        write_secret(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_of(&path), 0o600);
        assert_ne!(fs::metadata(&path).unwrap().ino(), before);
        let mut old = String::new();
        held.read_to_string(&mut old).unwrap();
        assert_eq!(old, "old content that is longer");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn write_secret_is_0600_even_with_permissive_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.seed");
        write_secret(&path, b"seed").unwrap();
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn write_atomic_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_secret(&link, b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&link).unwrap(), b"secret");
    }

    #[test]
    fn resolve_symlink_follows_links_only() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.conf");
        fs::write(&target, b"a = 1\n").unwrap();
        let link = dir.path().join("server.conf");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let resolved = resolve_symlink(&link).unwrap();
        assert_eq!(resolved, fs::canonicalize(&target).unwrap());
        write_atomic(&resolved, b"a = 2\n", 0o600).unwrap();
        assert_eq!(fs::read(&link).unwrap(), b"a = 2\n");
        assert_eq!(resolve_symlink(&target).unwrap(), target);
        let missing = dir.path().join("missing");
        assert_eq!(resolve_symlink(&missing).unwrap(), missing);
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            resolve_symlink(&dangling),
            Err(FileError::Io {
                op: "resolve symlink",
                ..
            })
        ));
    }

    #[test]
    fn write_atomic_into_missing_directory_fails_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("f");
        let err = write_atomic(&path, b"x", 0o600).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::Io {
                    op: "create a temporary file in",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("missing"));
    }

    #[test]
    fn write_atomic_refuses_paths_without_file_name() {
        let err = write_atomic(Path::new("/"), b"x", 0o600).unwrap_err();
        assert!(matches!(err, FileError::NoFileName { .. }));
    }

    #[test]
    fn write_new_secret_refuses_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.seed");
        write_new_secret(&path, b"first").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let err = write_new_secret(&path, b"second").unwrap_err();
        assert!(matches!(err, FileError::AlreadyExists { path: ref p } if p == &path));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn write_new_secret_refuses_dangling_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("seed");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let err = write_new_secret(&link, b"x").unwrap_err();
        assert!(matches!(err, FileError::AlreadyExists { .. }));
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn read_capped_enforces_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, vec![b'a'; 100]).unwrap();
        assert_eq!(read_capped(&path, 100).unwrap().len(), 100);
        let err = read_capped(&path, 99).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::TooLarge {
                    size: 100,
                    max: 99,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn read_capped_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_capped(&dir.path().join("none"), 10).unwrap_err();
        assert!(matches!(err, FileError::Io { op: "open", .. }));
        let err = read_capped(dir.path(), 10).unwrap_err();
        assert!(matches!(err, FileError::NotAFile { .. }));
        let path = dir.path().join("bin");
        fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = read_capped_string(&path, 10).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
