//! The two graphs PatchGD trains, plain ONNX so the runtime runs them as they are:
//!
//! ```text
//! backbone: patch [N, C, p, p] → (Conv 3×3 + bias, Relu, MaxPool 2) per width → GlobalAveragePool
//!           → Flatten → feature [N, d]             (d = the last width)
//! head:     z [N, d, m, m] → (Conv 3×3 + bias, Relu) × 2 → Conv 1×1 → cam [N, classes, m, m]
//!           → GlobalAveragePool → Flatten → logits [N, classes]
//! ```
//! The head's classifier is a 1×1 convolution before the average pool (the same linear map as
//! a Gemm after it): its output `cam` is each grid cell's share of every logit (a class
//! activation map, logits = mean over cells), which the board prints as the per-patch
//! contribution map. The head takes any grid size, so a board runs larger images than the
//! training size with the same graphs.
//! No batch normalisation in the backbone: PatchGD runs it on a few sampled patches at a time
//! (and without gradients on the rest), so batch statistics would differ between the fill and
//! the inner steps, and between training and the board.
//!
//! The backbone can also be a pretrained ImageNet CNN of the zoo catalogue (MobileNetV2, as in
//! the paper, or EfficientNet-Lite0; [`pretrained_backbone`]): built for p × p patches with
//! its batch norms folded into the convolutions (fixed statistics, for the same reason), the
//! gray patch mapped to its normalised RGB input, and a fresh linear layer from its pooled
//! features to d.

use crate::{Error, Result};
use edgeslim_data::assets::Assets;
use edgeslim_import::catalogue::{self, Builder};
use edgeslim_import::convnet::BatchNorm;
use edgeslim_import::gray::{self, GrayInput};
use edgeslim_onnx::builder::D;
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_train::families::layers::Net;
use onnx_protobuf::tensor_proto::DataType;
use rand::RngExt;
use serde::{Deserialize, Serialize};

pub const PATCH_INPUT: &str = "patch";
pub const FEATURE: &str = "feature";
pub const Z_INPUT: &str = "z";
pub const LOGITS: &str = "logits";
pub const CAM: &str = "cam";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchNetConfig {
    pub in_channels: usize,
    /// Patch side, pixels.
    pub patch: usize,
    /// Patches per image side (m).
    pub grid: usize,
    /// Backbone stages' widths (each halves the patch); d is the last.
    pub widths: Vec<usize>,
    pub head_width: usize,
    pub classes: usize,
    pub seed: u64,
}

impl PatchNetConfig {
    /// The feature dimension d.
    pub fn dim(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("PatchGD nets: {why}")));
        if self.in_channels == 0 || self.classes < 2 || self.grid == 0 || self.head_width == 0 {
            return bad("need ≥ 1 channel, ≥ 2 classes, a grid and a head width".into());
        }
        if self.widths.is_empty() || self.widths.contains(&0) {
            return bad(format!("backbone widths {:?}", self.widths));
        }
        if self.patch >> self.widths.len() == 0 {
            return bad(format!(
                "{} stages halve a {}-pixel patch to nothing",
                self.widths.len(),
                self.patch
            ));
        }
        Ok(())
    }
}

/// patch [N, C, p, p] → feature [N, d].
pub fn backbone(cfg: &PatchNetConfig) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new("patchgd-backbone", cfg.seed);
    let p = cfg.patch as i64;
    let mut x = n.b.input_dims(
        PATCH_INPUT,
        DataType::FLOAT,
        &[D::Sym("N"), D::N(cfg.in_channels as i64), D::N(p), D::N(p)],
    );
    let mut cin = cfg.in_channels;
    for (i, &w) in cfg.widths.iter().enumerate() {
        let name = format!("backbone.{i}");
        x = n.conv(&format!("{name}.conv"), &x, cin, w, 3, 1, 1, true);
        x = n.relu(&format!("{name}.relu"), &x);
        x = n.maxpool(&format!("{name}.pool"), &x, 2, 2);
        cin = w;
    }
    let pooled = n.node("GlobalAveragePool", "backbone.gap", &[&x], vec![]);
    n.flatten(FEATURE, &pooled);
    n.b.output_dims(FEATURE, &[D::Sym("N"), D::N(cfg.dim() as i64)]);
    Ok(n.b.finish())
}

/// z [N, d, m, m] → logits [N, classes].
pub fn head(cfg: &PatchNetConfig) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new("patchgd-head", cfg.seed ^ 0x4ead);
    let (d, h) = (cfg.dim(), cfg.head_width);
    // The grid is symbolic: trained at m × m, the same graph runs a board's larger images.
    let mut x = n.b.input_dims(
        Z_INPUT,
        DataType::FLOAT,
        &[
            D::Sym("N"),
            D::N(d as i64),
            D::Sym("grid_h"),
            D::Sym("grid_w"),
        ],
    );
    x = n.conv("head.0.conv", &x, d, h, 3, 1, 1, true);
    x = n.relu("head.0.relu", &x);
    x = n.conv("head.1.conv", &x, h, h, 3, 1, 1, true);
    x = n.relu("head.1.relu", &x);
    let cam = n.conv("head.classifier", &x, h, cfg.classes, 1, 1, 0, true);
    let cam = n.node("Identity", CAM, &[&cam], vec![]);
    let pooled = n.node("GlobalAveragePool", "head.gap", &[&cam], vec![]);
    n.flatten(LOGITS, &pooled);
    n.b.output_dims(LOGITS, &[D::Sym("N"), D::N(cfg.classes as i64)]);
    n.b.output_dims(
        CAM,
        &[
            D::Sym("N"),
            D::N(cfg.classes as i64),
            D::Sym("grid_h"),
            D::Sym("grid_w"),
        ],
    );
    Ok(n.b.finish())
}

/// The zoo catalogue's CNN `name` as the patch backbone: patch [N, 1, p, p] (pixels in [0, 1])
/// → feature [N, d], d = `cfg.dim()`. The gray patch is repeated over RGB and normalised as
/// the network was trained; the pooled features (1280 for MobileNetV2) go through a fresh
/// linear layer to d, initialised uniform in ±1/√width from `cfg.seed` (all of it is trained).
pub fn pretrained_backbone(name: &str, cfg: &PatchNetConfig, assets: &Assets) -> Result<OnnxModel> {
    cfg.validate()?;
    let entry = catalogue::find(name)?;
    if entry.builder == Builder::Dinov2Backbone {
        return Err(Error::Invalid(format!(
            "--backbone {name}: PatchGD's backbone is a CNN (mobilenetv2, efficientnet-lite0)"
        )));
    }
    let model = catalogue::import(entry, assets, cfg.patch, BatchNorm::Fold)?;
    let input = GrayInput {
        side: cfg.patch,
        mean: 0.0,
        std: 1.0,
    };
    let mut model = gray::classifier(model, input, (entry.mean, entry.std), cfg.dim())?;
    let width = model
        .constant(gray::HEAD_WEIGHT)
        .and_then(|w| w.ok())
        .and_then(|w| w.dims.get(1).copied())
        .ok_or_else(|| Error::Invalid(format!("{name}: the feature layer has no weight")))?;
    let bound = 1.0 / (width as f32).sqrt();
    let mut rng = edgeslim_data::rng(cfg.seed, 0xba6b);
    let w: Vec<f32> = (0..cfg.dim() * width)
        .map(|_| rng.random_range(-bound..=bound))
        .collect();
    model.set_initializer(gray::HEAD_WEIGHT, &Tensor::f32(vec![cfg.dim(), width], w)?);
    for (from, to) in [(gray::INPUT, PATCH_INPUT), (gray::OUTPUT, FEATURE)] {
        model.rename_tensor(from, to);
        let g = model.graph_mut();
        for v in g.input.iter_mut().chain(g.output.iter_mut()) {
            if v.name == from {
                v.name = to.to_string();
            }
        }
    }
    model.validate_references()?;
    Ok(model)
}
