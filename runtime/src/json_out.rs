//! `--json [FILE]`, the one rule both tools follow: `--json` alone prints the command's JSON
//! on stdout (instead of its text), `--json FILE` also writes it to FILE (atomically, next to
//! the usual text). FILE must end in `.json` (or be `-` for stdout): a model path right after
//! a bare `--json` is refused as a usage error instead of being overwritten.

use crate::error::{Result, RuntimeError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonDest {
    Stdout,
    File(PathBuf),
}

impl FromStr for JsonDest {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "-" {
            return Ok(JsonDest::Stdout);
        }
        if Path::new(s)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            return Ok(JsonDest::File(PathBuf::from(s)));
        }
        Err(format!(
            "'{s}' is not a .json file: --json alone prints JSON on stdout, --json FILE.json \
             writes it to a file (give --json after the positional arguments, or --json=FILE.json)"
        ))
    }
}

/// The `--json [FILE.json]` flag, for a command's argument struct (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JsonArg {
    /// JSON: `--json` prints it on stdout instead of the text, `--json FILE.json` also writes
    /// it there.
    #[arg(
        id = "json",
        long = "json",
        value_name = "FILE",
        num_args = 0..=1,
        default_missing_value = "-"
    )]
    pub dest: Option<JsonDest>,
}

impl JsonDest {
    pub fn is_stdout(&self) -> bool {
        matches!(self, JsonDest::Stdout)
    }
}

/// Is the JSON going to stdout (so the text output must stay off it)?
pub fn to_stdout(dest: &Option<JsonDest>) -> bool {
    dest.as_ref().is_some_and(JsonDest::is_stdout)
}

/// The file the JSON goes to, if any (for a closing `report: FILE` line).
pub fn file(dest: &Option<JsonDest>) -> Option<&Path> {
    match dest {
        Some(JsonDest::File(p)) => Some(p),
        _ => None,
    }
}

/// Emit `value` where `dest` says; returns true when it went to stdout (the caller then
/// prints no text of its own).
pub fn emit<T: Serialize + ?Sized>(dest: &Option<JsonDest>, value: &T) -> Result<bool> {
    let Some(dest) = dest else {
        return Ok(false);
    };
    let text =
        serde_json::to_string_pretty(value).map_err(|e| RuntimeError::Other(e.to_string()))?;
    match dest {
        JsonDest::Stdout => {
            println!("{text}");
            Ok(true)
        }
        JsonDest::File(path) => {
            crate::fsutil::write_atomic(path, format!("{text}\n").as_bytes())?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stdout_or_json_files() {
        assert_eq!("-".parse::<JsonDest>(), Ok(JsonDest::Stdout));
        assert_eq!(
            "out/r.JSON".parse::<JsonDest>(),
            Ok(JsonDest::File("out/r.JSON".into()))
        );
        let e = "model.onnx".parse::<JsonDest>().unwrap_err();
        assert!(e.contains("'model.onnx' is not a .json file"), "{e}");
    }

    #[test]
    fn a_file_is_written_whole_and_stdout_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let wrote = emit(&Some(JsonDest::File(p.clone())), &vec![1, 2]).unwrap();
        assert!(!wrote);
        let back: Vec<i32> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, vec![1, 2]);
        assert!(!emit(&None, &1).unwrap());
    }
}
