//! Errors of the host library. Each names the file, node, tensor or field it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable ONNX model ({reason})")]
    NotOnnx { path: PathBuf, reason: String },
    #[error("tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("graph: {0}")]
    Graph(String),
    #[error(transparent)]
    Runtime(#[from] edgeslim_runtime::RuntimeError),
    /// Input the library cannot use: a data spec, a file's contents, a combination of settings.
    #[error("{0}")]
    Invalid(String),
    /// One option of a library call (a field of its options struct, by that name: `ratio` of
    /// `PruneOptions`) has a value the library cannot use. The library names the option; the
    /// command line shows it as the flag that set it (`--ratio 1.5: ...`), so no library
    /// message needs to know the CLI.
    #[error("option {option}{}: {reason}", value.as_ref().map(|v| format!(" = {v}")).unwrap_or_default())]
    Option {
        option: &'static str,
        value: Option<String>,
        reason: String,
    },
    #[error("{0}")]
    Other(String),
    /// Fetching or reading the cache of real models and data (`edgeslim assets`).
    #[error("assets: {0}")]
    Assets(String),
    /// ONNX Runtime, the second engine: loading the library, a session, a run.
    #[error("onnxruntime: {0}")]
    Ort(String),
    /// Board profiles, cross builds, bundles and deployment: `edgeslim_boards::TargetError`,
    /// boxed because that crate sits above this one (it converts with `?`).
    #[error(transparent)]
    Board(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Option `option` (its library name) is unusable, for `reason`.
    pub fn option(option: &'static str, reason: impl Into<String>) -> Self {
        Error::Option {
            option,
            value: None,
            reason: reason.into(),
        }
    }

    /// Option `option` (its library name) set to `value` is unusable, for `reason`.
    pub fn option_value(
        option: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::Option {
            option,
            value: Some(value.to_string()),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn tensor(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tensor {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
