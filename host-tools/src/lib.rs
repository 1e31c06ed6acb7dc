//! edgeslim host tools: read, inspect, optimise, compress and benchmark ONNX models, and
//! prepare them for small ARM boards. The board side lives in `edgeslim-runtime`.

pub mod error;
pub mod onnx;

pub use error::{Error, Result};
