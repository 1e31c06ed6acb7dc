//! edgeslim host tools: read, inspect, optimise, compress and benchmark ONNX models, and
//! prepare them for small ARM boards. The board side lives in `edgeslim-runtime`.

pub mod error;
pub mod onnx;

pub use error::{Error, Result};
pub mod anomaly;
pub mod assets;
pub mod bench;
pub mod calib;
pub mod demo;
pub mod engines;
pub mod inspect;
pub mod lowrank;
pub mod optimize;
pub mod prune;
pub mod quantize;
pub mod report;
pub mod target;
pub mod train;
