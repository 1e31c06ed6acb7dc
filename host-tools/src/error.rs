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
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
    /// Fetching or reading the cache of real models and data (`edgeslim assets`).
    #[error("assets: {0}")]
    Assets(String),
    /// ONNX Runtime, the second engine: loading the library, a session, a run.
    #[error("onnxruntime: {0}")]
    Ort(String),
    /// Board profiles, cross builds, bundles and deployment (`crate::target`).
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
}

impl Error {
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

    pub fn node(node: &onnx_protobuf::NodeProto, reason: impl Into<String>) -> Self {
        Error::Node {
            node: crate::onnx::node::display_name(node),
            op: node.op_type.clone(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
