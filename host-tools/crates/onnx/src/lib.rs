//! edgeslim-onnx: the ONNX graph IR (read, edit, write), the optimise passes, `inspect`
//! (params, MACs, shapes). Every other host crate builds on it; it depends only on `edgeslim-runtime`.

pub mod builder;
pub mod error;
pub mod inspect;
pub mod model;
pub mod node;
pub mod opset;
pub mod optimize;
pub mod provenance;
pub mod tensor;

pub use model::{OnnxModel, SaveOptions};
pub use tensor::{Tensor, TensorData};

pub use error::{Error, Result};
