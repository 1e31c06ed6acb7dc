//! PatchGD (`../shared/methods.md` §7): a CNN trained end to end on images too large for
//! memory. The image is cut into an m×m grid of patches; a backbone maps each patch to a
//! d-vector stored in a latent map Z [B, d, m, m] and a head classifies Z. Per mini-batch, Z is
//! filled without gradients; then in k inner steps a random fraction s of the patches is
//! recomputed with gradients and written into Z, the head runs on Z, and the loss is
//! back-propagated through the head into those patches' backbone passes; the gradients of the
//! inner steps are accumulated and the optimiser steps once. Memory holds one patch group's
//! activations and Z, never the whole image's.
//!
//! - [`nets`]: the two graphs (patch backbone → d-vector, head over Z) as plain ONNX.
//! - [`grid`]: the patch geometry and patch extraction.
//! - [`trainer`]: Z filling, the inner steps, the accumulated gradients.
//! - [`data`], [`run`]: `edgeslim train-patch` on an UltraMNIST-style folder.

pub mod data;
pub mod grid;
pub mod nets;
pub mod run;
pub mod trainer;

pub use edgeslim_onnx::{Error, Result};
pub use grid::Grid;
pub use nets::PatchNetConfig;
pub use trainer::PatchGd;
