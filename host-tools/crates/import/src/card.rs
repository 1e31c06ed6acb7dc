//! The card written next to an imported model: where the weights came from (package, version,
//! member, sha256, licence), what the model computes and how to feed it, its size and cost,
//! its latency on both engines and whether they agree, and what importing it cost.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub package: String,
    pub version: String,
    /// The file inside the wheel.
    pub member: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub threads: usize,
    pub runs: usize,
    pub tract_p50_ms: f64,
    pub ort_p50_ms: f64,
    pub ort_version: Option<String>,
    /// Largest |tract − ORT| over the largest |ORT|, per output, worst output.
    pub max_relative_diff: f64,
    pub cpu: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportCard {
    pub name: String,
    pub description: String,
    pub source: Option<SourceFile>,
    pub licence: String,
    pub preprocessing: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub inputs: Vec<(String, Vec<usize>)>,
    pub outputs: Vec<(String, Vec<usize>)>,
    pub params: u64,
    pub macs: u64,
    pub latency: Option<Latency>,
    pub import_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    /// The ONNX file written, with its hash (the same bytes on every import: a test checks).
    pub file: String,
    pub file_bytes: u64,
    pub file_sha256: String,
    pub command: String,
    pub edgeslim_version: String,
    /// Checks run on real inputs at import time (e.g. the top-5 classes of test photographs).
    #[serde(default)]
    pub checks: Vec<String>,
}

fn millions(v: u64) -> String {
    format!("{:.2} M", v as f64 / 1e6)
}

impl ImportCard {
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n\n{}\n", self.name, self.description);
        let _ = writeln!(s, "| | |\n|---|---|");
        if let Some(src) = &self.source {
            let _ = writeln!(
                s,
                "| source | PyPI `{}=={}`, `{}` ({} bytes, sha256 `{}`) |",
                src.package, src.version, src.member, src.bytes, src.sha256
            );
        }
        let _ = writeln!(s, "| licence | {} |", self.licence);
        let _ = writeln!(s, "| preprocessing | {} |", self.preprocessing);
        for (n, d) in &self.inputs {
            let _ = writeln!(s, "| input | `{n}` {d:?} |");
        }
        for (n, d) in &self.outputs {
            let _ = writeln!(s, "| output | `{n}` {d:?} |");
        }
        let _ = writeln!(s, "| parameters | {} |", millions(self.params));
        let _ = writeln!(s, "| MACs | {} |", millions(self.macs));
        if let Some(l) = &self.latency {
            let _ = writeln!(
                s,
                "| latency, {} thread(s), p50 of {} runs interleaved | tract {:.2} ms, ONNX Runtime {} {:.2} ms ({}) |",
                l.threads,
                l.runs,
                l.tract_p50_ms,
                l.ort_version.as_deref().unwrap_or(""),
                l.ort_p50_ms,
                l.cpu.as_deref().unwrap_or("unknown CPU")
            );
            let _ = writeln!(
                s,
                "| tract vs ONNX Runtime | max relative difference {:.2e} |",
                l.max_relative_diff
            );
        }
        let _ = writeln!(
            s,
            "| import | {:.2} s, peak RSS {} |",
            self.import_seconds,
            self.peak_rss_bytes.map_or("unknown".into(), |b| format!(
                "{:.0} MiB",
                b as f64 / 1048576.0
            ))
        );
        let _ = writeln!(
            s,
            "| file | `{}` ({} bytes, sha256 `{}`) |",
            self.file, self.file_bytes, self.file_sha256
        );
        let _ = writeln!(
            s,
            "| made by | `{}` (edgeslim {}) |",
            self.command, self.edgeslim_version
        );
        if !self.checks.is_empty() {
            let _ = writeln!(s, "\n## Checks at import\n");
            for c in &self.checks {
                let _ = writeln!(s, "- {c}");
            }
        }
        s
    }

    /// Write `dir/card.json` and `dir/card.md`, each atomically.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let json = dir.join("card.json");
        let md = dir.join("card.md");
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Other(format!("{}: {e}", json.display())))?;
        edgeslim_runtime::fsutil::write_atomic(&json, &text)?;
        edgeslim_runtime::fsutil::write_atomic(&md, self.to_markdown().as_bytes())?;
        Ok((json, md))
    }

    pub fn read(path: &Path) -> Result<ImportCard> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Invalid(format!("{}: not an import card: {e}", path.display())))
    }
}
