//! Where a model came from, carried inside it: `metadata_props["edgeslim.provenance"]` holds a
//! JSON list with one entry per `edgeslim` command that wrote the file (tool version, the
//! command, the ONNX files it read with their sha256), oldest first. Every save appends an
//! entry to the history of the model being saved (or, for a graph built anew, of the first
//! model the command read), so the list survives optimize → compress → fine-tune chains.
//!
//! Off unless a binary switches it on ([`enable`]): library users write models unchanged.
//! Entries are reproducible: output paths in the command become `<out>`, inputs are named by
//! file name and content hash, and there is no clock.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

pub const KEY: &str = "edgeslim.provenance";

/// One command that wrote the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `edgeslim 0.1.0`.
    pub tool: String,
    /// The command line after the program name, output paths as `<out>`.
    pub command: String,
    /// The ONNX files the command read before writing this one.
    pub inputs: Vec<Input>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub file: String,
    pub sha256: String,
}

struct State {
    tool: String,
    command: String,
    inputs: Vec<(Input, Vec<Entry>)>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Flags whose value is a path the command writes: recorded as `<out>`.
const OUTPUT_FLAGS: &[&str] = &[
    "-o",
    "--output",
    "--out",
    "--report",
    "--json",
    "--curves",
    "--record",
    "--results",
];

/// The command line as recorded: arguments after the program, output paths as `<out>`.
pub fn normalize(args: &[String]) -> String {
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_output = false;
    for a in args {
        if next_is_output && !a.starts_with('-') {
            out.push("<out>".to_string());
            next_is_output = false;
            continue;
        }
        next_is_output = false;
        if let Some((flag, _)) = a.split_once('=') {
            if OUTPUT_FLAGS.contains(&flag) {
                out.push(format!("{flag}=<out>"));
                continue;
            }
        }
        if OUTPUT_FLAGS.contains(&a.as_str()) {
            next_is_output = true;
        }
        out.push(a.clone());
    }
    out.join(" ")
}

/// Record provenance from now on, for `tool` (`edgeslim 0.1.0`) run with `args` (after the
/// program name).
pub fn enable(tool: &str, args: &[String]) {
    *state() = Some(State {
        tool: tool.to_string(),
        command: normalize(args),
        inputs: Vec::new(),
    });
}

/// Replace the recorded command by a canonical form: for outputs that must be reproducible
/// byte for byte whatever the run's incidental flags (`zoo import NAME --size N`).
pub fn set_command(command: &str) {
    if let Some(s) = state().as_mut() {
        s.command = command.to_string();
    }
}

/// A non-ONNX input the command read (a PyTorch checkpoint): recorded like a model file.
pub fn add_input(file: &str, sha256: &str) {
    if let Some(s) = state().as_mut() {
        s.inputs.push((
            Input {
                file: file.to_string(),
                sha256: sha256.to_string(),
            },
            Vec::new(),
        ));
    }
}

/// A model file was read (called by `OnnxModel::load`).
pub(crate) fn loaded(path: &Path, bytes: &[u8], history: Vec<Entry>) {
    if let Some(s) = state().as_mut() {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let sha256 = edgeslim_runtime::model::file_sha256(bytes);
        if !s
            .inputs
            .iter()
            .any(|(i, _)| i.sha256 == sha256 && i.file == file)
        {
            s.inputs.push((Input { file, sha256 }, history));
        }
    }
}

/// The history a model carries (empty when it has none; an unreadable one is an error naming
/// the key).
pub fn history(value: Option<&str>) -> Result<Vec<Entry>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str(v).map_err(|e| format!("{KEY}: {e}")),
    }
}

/// The value to store on save: the model's own history (or the first input's, for a graph
/// built anew) plus this command. None when provenance is off.
pub(crate) fn stamped(value: Option<&str>, out: &Path) -> Option<String> {
    let guard = state();
    let s = guard.as_ref()?;
    let out_name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    let inputs: Vec<&(Input, Vec<Entry>)> = s
        .inputs
        .iter()
        .filter(|(i, _)| Some(&i.file) != out_name.as_ref() || s.inputs.len() == 1)
        .collect();
    let mut list = match history(value) {
        Ok(h) if !h.is_empty() => h,
        _ => inputs.first().map(|(_, h)| h.clone()).unwrap_or_default(),
    };
    let entry = Entry {
        tool: s.tool.clone(),
        command: s.command.clone(),
        inputs: inputs.iter().map(|(i, _)| i.clone()).collect(),
    };
    // Saving the same model twice in one command (a pair, a best-epoch checkpoint) records
    // the command once.
    if list.last() != Some(&entry) {
        list.push(entry);
    }
    serde_json::to_string(&list).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_are_hidden_and_the_rest_kept() {
        let args: Vec<String> = [
            "compress",
            "prune",
            "m.onnx",
            "--ratio",
            "0.5",
            "-o",
            "/tmp/x/p.onnx",
            "--report=r",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            normalize(&args),
            "compress prune m.onnx --ratio 0.5 -o <out> --report=<out> --json"
        );
    }
}
