//! edgeslim host tools: read, inspect, optimise, compress and benchmark ONNX models, and
//! prepare them for small ARM boards. The board side lives in `edgeslim-runtime`.

pub mod error;
pub mod onnx;

pub use error::{Error, Result};
pub mod assets;
pub mod bench;
pub mod demo;
pub mod engines;
pub mod inspect;
pub mod optimize;
pub mod report;
