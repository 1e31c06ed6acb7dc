//! File writes that never leave a half-written result behind.

use crate::error::{Result, RuntimeError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A temporary path next to `path` (same directory, so the final rename is atomic).
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = format!(".{name}.{}.tmp", std::process::id());
    match dir {
        Some(d) => d.join(tmp),
        None => PathBuf::from(tmp),
    }
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
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
    }
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(RuntimeError::io(path, e));
    }
    Ok(())
}

/// Refuse to write an output over one of the inputs (compared after resolving links).
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
    fn refuses_to_overwrite_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        std::fs::write(&p, b"x").unwrap();
        let alias = dir.path().join(".").join("m.onnx");
        assert!(ensure_not_input(&alias, &[&p]).is_err());
        assert!(ensure_not_input(&dir.path().join("o.onnx"), &[&p]).is_ok());
    }
}
