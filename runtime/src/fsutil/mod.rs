//! File writes that never leave a half-written result behind, never replace what is not a
//! regular file, and leave no temporary file behind on Ctrl-C.

use crate::error::{Result, RuntimeError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

mod temps;

pub use temps::{install_interrupt_cleanup, remove_temp_files_now};

/// Lower-case hex sha256 of `bytes` (the form manifests and SHA256SUMS files use).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Size and lower-case hex sha256 of a file, streamed (the ORT library is 35 MB).
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, format!("{:x}", h.finalize())))
}

/// A temporary path next to `path` (same directory, so the final rename is atomic), unique
/// within this process too (threads writing next to each other do not collide).
pub fn temp_path_for(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(".{name}.{}.{n}.tmp", std::process::id());
    match dir {
        Some(d) => d.join(tmp),
        None => PathBuf::from(tmp),
    }
}

/// Refuse to replace an existing path that is not a regular file: renaming over a device
/// node (`-o /dev/null` as root), a FIFO, a socket or a folder would destroy it.
pub fn ensure_replaceable(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // nothing there yet (or a dangling link, which rename replaces)
    };
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a folder"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(RuntimeError::Other(format!(
        "{}: is {what}; refusing to replace it with an output file (choose a file path)",
        path.display()
    )))
}

/// Write `bytes` to a temporary file, flush it to disk, then rename it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`] for writers that stream their output.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    ensure_replaceable(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|d| !d.exists()) {
        // Outputs may name a new folder (`-o results/run1/model.onnx`, a report folder):
        // it is created, and said so, so a typo in a path does not go unnoticed.
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
        eprintln!("note: created the folder {}", dir.display());
    }
    let tmp = temp_path_for(path);
    let guard = temps::register(&tmp);
    let result = (|| {
        let mut f = std::fs::File::create_new(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the folder is synced.
        if let Ok(d) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    drop(guard);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(RuntimeError::io(path, e));
    }
    Ok(())
}

/// Refuse to write an output over one of the inputs (compared after resolving links). Pass
/// every file an input consists of (a model and its external-data files).
pub fn ensure_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    let out = std::fs::canonicalize(output).ok();
    for input in inputs {
        let same = match (&out, std::fs::canonicalize(input).ok()) {
            (Some(o), Some(i)) => *o == i,
            _ => output == *input,
        };
        if same {
            return Err(RuntimeError::Other(format!(
                "{}: refusing to overwrite the input model; choose another output path",
                output.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn atomic_write_replaces_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let failed = write_atomic_with(&p, |_| Err(std::io::Error::other("boom")));
        assert!(failed.unwrap_err().to_string().contains("boom"));
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"two",
            "a failed write keeps the old file"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn refuses_to_replace_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.onnx");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = write_atomic(&fifo, b"x").unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        let e = write_atomic(dir.path(), b"x").unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        // Only the check, never a write: a regression must not replace the real /dev/null.
        let e = ensure_replaceable(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a device"), "{e}");
        // Temporary names differ within one process.
        let p = dir.path().join("m.onnx");
        assert_ne!(temp_path_for(&p), temp_path_for(&p));
    }

    #[test]
    fn refuses_to_overwrite_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        std::fs::write(&p, b"x").unwrap();
        let alias = dir.path().join(".").join("m.onnx");
        assert!(ensure_not_input(&alias, &[&p]).is_err());
        assert!(ensure_not_input(&dir.path().join("o.onnx"), &[&p]).is_ok());
    }
}
