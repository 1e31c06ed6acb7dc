//! Gaussian (Mahalanobis) anomaly detection (docs/methods/anomaly.md).
//!
//! `fit` reads features of normal images from a pretrained backbone (tract, named intermediate
//! tensors as outputs), fits one Gaussian per level with Ledoit–Wolf shrinkage, and `export`
//! writes ONE ONNX graph — image in, score and anomaly map out — with thresholds from χ²
//! quantiles and the score normalisation in its metadata. `eval` measures image AUROC, pixel
//! AUROC and PRO on MVTec-layout folders, which `data` generates from real textures.
//!
//! Fine-tuning the backbone (`edgeslim anomaly finetune`, [`finetune`]) slots in before `fit`:
//! it writes a fine-tuned trunk ONNX that `fit` takes as its backbone.

pub mod backbones;
pub mod chi2;
pub mod data;
pub mod eval;
pub mod export;
pub mod features;
pub mod finetune;
pub mod fit;
pub mod gaussian;
pub mod metrics;

pub use export::export;
pub use features::{Prep, Trunk, PPOCR_LAYERS};
pub use fit::{fit, Detector, FitOptions, ImageScore};
pub use gaussian::Shrinkage;

pub use edgeslim_onnx::{Error, Result};
