//! Errors of the runtime library. Every variant names the file, node or field at fault so the
//! binaries can print one line and exit non-zero.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable ONNX model ({reason})")]
    NotOnnx { path: PathBuf, reason: String },
    #[error(
        "{path}: node '{node}' uses op '{op}' (domain '{domain}'), which tract does not support"
    )]
    UnsupportedOp {
        path: PathBuf,
        node: String,
        op: String,
        domain: String,
    },
    #[error("{path}: {stage}: {reason}")]
    Tract {
        path: PathBuf,
        stage: &'static str,
        reason: String,
    },
    #[error("input shape '{spec}': {reason}")]
    BadShapeSpec { spec: String, reason: String },
    #[error("{path}: input '{input}': {reason}")]
    Input {
        path: PathBuf,
        input: String,
        reason: String,
    },
    #[error("{path}: tensor '{tensor}' would hold {elements} elements ({bytes} bytes), over the limit of {limit} bytes")]
    TooLarge {
        path: PathBuf,
        tensor: String,
        elements: u128,
        bytes: u128,
        limit: u64,
    },
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    /// The model breaks a rule of the ONNX operator it uses (a zero stride, an axis outside
    /// the rank): refused before tract sees it.
    #[error("{path}: {node}: {reason}")]
    Invalid {
        path: PathBuf,
        node: String,
        reason: String,
    },
    /// The device behind a live source went away (a camera unplugged); not a bad frame.
    #[error("{0}")]
    SourceLost(String),
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wrap a tract error as one line: tract chains contexts, we keep them joined by ": ".
    pub fn tract(path: impl Into<PathBuf>, stage: &'static str, err: anyhow::Error) -> Self {
        RuntimeError::Tract {
            path: path.into(),
            stage,
            reason: one_line(&err),
        }
    }
}

/// Join an error chain into one line, dropping tract's multi-line node dumps.
pub fn one_line(err: &anyhow::Error) -> String {
    one_line_with(err, |_| None)
}

/// [`one_line`], with `render` given the first say on each cause (`None`: its own message).
/// The host CLI uses it to show a library option error as the flag that set the option.
pub fn one_line_with(
    err: &anyhow::Error,
    render: impl Fn(&(dyn std::error::Error + 'static)) -> Option<String>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = render(cause).unwrap_or_else(|| cause.to_string());
        let first = text.lines().next().unwrap_or("").trim().to_string();
        // A cause already quoted by the message above it (`{path}: {source}`) is not repeated.
        if !first.is_empty() && !parts.iter().any(|p| p.contains(first.as_str())) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_quoted_by_its_message_is_said_once() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::new(RuntimeError::io("m.onnx", missing)).context("loading");
        assert_eq!(one_line(&err), "loading: m.onnx: No such file");
    }
}
