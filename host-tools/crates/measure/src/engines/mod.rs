//! Inference engines besides tract. On the host they check our graphs independently (every
//! ONNX we write must run and agree on two engines, CONTRIBUTING.md) and give a speed reference
//! for `edgeslim bench --backend both`. The board runtime stays tract-only.

#[cfg(feature = "ort")]
pub mod ort;
