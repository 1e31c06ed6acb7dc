//! edgeslim-measure: how the host measures a model, the same way for every method, the demo and
//! `edgeslim bench`: the benchmark harness over tract and ONNX Runtime ([`bench`], [`engines`]),
//! fidelity between two models' outputs ([`fidelity`]) and a model's size/MAC/latency facts
//! ([`facts`]), and [`runner`], the host's one way to run a graph's inner tensors in tract.

pub mod bench;
pub mod detection;
pub mod engines;
pub mod facts;
pub mod fidelity;
pub mod runner;

pub use edgeslim_onnx::{Error, Result};
