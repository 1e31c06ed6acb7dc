//! edgeslim-compress: the compression methods, one module each — [`lowrank`] (weight-space SVD
//! and feature-space PCA), [`prune`] (structured pruning over channel dependency groups) and
//! [`quantize`] (fp16, int8). Methods return their reports as data; `edgeslim-report` renders
//! them.

pub mod lowrank;
pub mod pipeline;
pub mod prune;
pub mod quantize;
pub mod study;

pub use edgeslim_onnx::{Error, Result};
