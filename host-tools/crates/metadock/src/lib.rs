//! Gradient-based meta-learning with MetaDOCK (`../shared/methods.md` §6): a Conv-4 learns an
//! initialisation from which a few SGD steps on a new task's support set classify its queries
//! (MAML, first-order MAML or iMAML), and, with MetaDOCK, one gate per 2-D kernel that the same
//! inner loop adapts per task, so each task keeps only the kernels it needs.
//!
//! - [`nets`]: Conv-4 as ONNX, the gated training graph and the plain per-task graph.
//! - [`gates`]: the kernel gates ζ, hard masks with straight-through gradients, the budget term.
//! - [`params`]: weights as flat lists of tensors (snapshots, axpy, dot).
//! - [`learner`]: the inner loop and the three meta-gradients (MAML through Hessian-vector
//!   products, first-order MAML, iMAML by conjugate gradient).
//! - [`export`]: a task's model with only its active kernels, packed to channels.
//! - [`run`]: `edgeslim meta train / adapt / eval` on a few-shot pool.

pub mod export;
pub mod gates;
pub mod learner;
pub mod nets;
pub mod params;
pub mod run;

pub use edgeslim_onnx::{Error, Result};
pub use learner::{Algo, Learner, LearnerConfig};
pub use nets::{Arch, NetConfig};
