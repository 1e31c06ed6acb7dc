//! Depth-heterogeneous growth (`../shared/methods.md` §9): a ViT starts narrow and, every
//! interval of training, grows the MLP neurons and heads whose splitting matrices have the
//! most negative eigenvalues, each split into a ± pair along that eigenvector, under a
//! parameter budget, so every block ends with the widths its loss asked for.
//!
//! - [`split`]: the splitting matrix of every MLP neuron and its smallest eigenpair, and of
//!   every head's q·k (a QKV unit: one more dimension in every head of a block).
//! - [`grow`]: a neuron or QKV unit split on the ONNX ViT (the function kept to O(ε²)).
//! - [`run`]: `edgeslim grow`: staged training with growth steps under the budget, or the
//!   uniformly scaled baseline on the same schedule.

pub mod grow;
pub mod run;
pub mod split;

pub use edgeslim_onnx::{Error, Result};
