//! Model families: ONNX graphs (opset 17, built with [`edgeslim_onnx::builder::GraphBuilder`])
//! with seeded initial weights, named so pruning and low-rank tools find layers by name.
//!
//! | family | builder | input → output |
//! |---|---|---|
//! | `cnn` | [`cnn::build`] | `x [N,1,28,28]` → `logits [N,10]` |
//! | `vit` | [`vit::build`] | `x [N,1,28,28]` → `logits [N,10]` |
//! | `siamese` | [`siamese::build_train`], [`siamese::build_template`], [`siamese::build_search`] | see [`siamese`] |
//!
//! Every model carries metadata `edgeslim.family` and `edgeslim.config` (the config as JSON)
//! and `edgeslim.seed`.

pub mod cnn;
pub mod init;
pub mod layers;
pub mod siamese;
pub mod vit;

use crate::Result;
use edgeslim_onnx::OnnxModel;
use serde::{Deserialize, Serialize};

/// The opset every family is written in.
pub const OPSET: i64 = 17;

/// A family and its sizes, as a recipe's `[model]` table names it
/// (`family = "cnn" | "vit" | "siamese"` plus that family's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum FamilySpec {
    Cnn(cnn::CnnConfig),
    Vit(vit::VitConfig),
    Siamese(siamese::SiameseConfig),
}

impl FamilySpec {
    pub fn name(&self) -> &'static str {
        match self {
            FamilySpec::Cnn(_) => "cnn",
            FamilySpec::Vit(_) => "vit",
            FamilySpec::Siamese(_) => "siamese",
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            FamilySpec::Cnn(c) => c.validate(),
            FamilySpec::Vit(c) => c.validate(),
            FamilySpec::Siamese(c) => c.validate(),
        }
    }

    /// Set the seed the weights are drawn with.
    pub fn set_seed(&mut self, seed: u64) {
        match self {
            FamilySpec::Cnn(c) => c.seed = seed,
            FamilySpec::Vit(c) => c.seed = seed,
            FamilySpec::Siamese(c) => c.seed = seed,
        }
    }

    /// Classes of a classifier (`None` for the tracker).
    pub fn classes(&self) -> Option<usize> {
        match self {
            FamilySpec::Cnn(c) => Some(c.classes),
            FamilySpec::Vit(c) => Some(c.classes),
            FamilySpec::Siamese(_) => None,
        }
    }

    /// A classifier's input channels and image side (`None` for the tracker).
    pub fn image_input(&self) -> Option<(usize, usize)> {
        match self {
            FamilySpec::Cnn(c) => Some((c.in_channels, c.image_size)),
            FamilySpec::Vit(c) => Some((c.in_channels, c.image_size)),
            FamilySpec::Siamese(_) => None,
        }
    }

    /// The graph the engine trains (`batch` is used by the tracker's fixed-batch graph only).
    pub fn build_train(&self, batch: usize) -> Result<OnnxModel> {
        match self {
            FamilySpec::Cnn(c) => cnn::build(c),
            FamilySpec::Vit(c) => vit::build(c),
            FamilySpec::Siamese(c) => siamese::build_train(c, batch),
        }
    }
}

/// Record the family, its config and seed in the model's metadata.
pub fn describe<C: Serialize>(model: &mut OnnxModel, family: &str, cfg: &C) {
    model.set_metadata("edgeslim.family", family);
    if let Ok(v) = serde_json::to_value(cfg) {
        if let Some(seed) = v.get("seed") {
            model.set_metadata("edgeslim.seed", &seed.to_string());
        }
        model.set_metadata("edgeslim.config", &v.to_string());
    }
}
