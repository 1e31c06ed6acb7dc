//! The ONNX graph IR: read, edit, write.

pub mod builder;
pub mod model;
pub mod node;
pub mod opset;
pub mod tensor;

pub use model::{OnnxModel, SaveOptions};
pub use tensor::{Tensor, TensorData};
