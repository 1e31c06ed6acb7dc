//! `pair.json`: the record that a tracker's two graphs were written together.
//!
//! Two files cannot be replaced in one atomic step, and a kill between the renames (or a
//! pruning run writing into a folder that held another pair) would leave a template of one
//! run beside the search graph of another. The writer removes the record first, writes both
//! graphs, and writes the record last with both files' SHA-256; the loader refuses a pair the
//! record does not describe. Without a record (hand-made pairs, older folders) the pair is
//! trusted as before, and the search graph's declared kernel shape still has to match.

use crate::fsutil;
use crate::{Result, RuntimeError};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MANIFEST: &str = "pair.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PairManifest {
    pub template_sha256: String,
    pub search_sha256: String,
}

/// Remove the record before a pair is rewritten, so an interrupted write leaves none.
pub fn begin_write(dir: &Path) -> Result<()> {
    match std::fs::remove_file(dir.join(MANIFEST)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(dir, e)),
        _ => Ok(()),
    }
}

/// Record the pair as written (read back from disk, so the record is what a loader sees).
pub fn finish_write(dir: &Path) -> Result<()> {
    let sha = |name: &str| -> Result<String> {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| RuntimeError::io(&p, e))?;
        Ok(crate::model::file_sha256(&bytes))
    };
    let m = PairManifest {
        template_sha256: sha("template.onnx")?,
        search_sha256: sha("search.onnx")?,
    };
    let bytes = serde_json::to_vec_pretty(&m).map_err(|e| RuntimeError::Other(e.to_string()))?;
    fsutil::write_atomic(&dir.join(MANIFEST), &bytes)
}

/// Refuse a pair its folder's record does not describe.
pub fn check(dir: &Path, template_sha256: &str, search_sha256: &str) -> Result<()> {
    let p = dir.join(MANIFEST);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::io(&p, e)),
    };
    let m: PairManifest = serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Data {
        path: p.clone(),
        reason: format!("not a pair record: {e}"),
    })?;
    let mismatched: Vec<&str> = [
        ("template.onnx", m.template_sha256 != template_sha256),
        ("search.onnx", m.search_sha256 != search_sha256),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(n, _)| n)
    .collect();
    if mismatched.is_empty() {
        return Ok(());
    }
    Err(RuntimeError::Data {
        path: p,
        reason: format!(
            "{} changed since the pair was written together: the two graphs may come from \
             different runs; write the pair again (or delete {MANIFEST} to trust it as is)",
            mismatched.join(" and ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_from_two_writes_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("template.onnx"), b"t1").unwrap();
        std::fs::write(d.path().join("search.onnx"), b"s1").unwrap();
        let sha = |b: &[u8]| crate::model::file_sha256(b);
        check(d.path(), &sha(b"t1"), &sha(b"s1")).unwrap(); // no record: trusted
        finish_write(d.path()).unwrap();
        check(d.path(), &sha(b"t1"), &sha(b"s1")).unwrap();
        let e = check(d.path(), &sha(b"t2"), &sha(b"s1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("template.onnx changed since"), "{e}");
        begin_write(d.path()).unwrap();
        assert!(!d.path().join(MANIFEST).exists());
        check(d.path(), &sha(b"t2"), &sha(b"s1")).unwrap();
    }
}
