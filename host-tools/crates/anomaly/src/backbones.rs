//! The backbones `anomaly fit|finetune --backbone NAME` know by name: PP-OCRv4's detector
//! (from the asset cache) and the ImageNet CNNs of `edgeslim zoo import`, imported at the
//! images' size (their padding is static) into the cache once and reused, each with its
//! feature layers and input normalisation. Layers are the outputs of the stages at strides
//! 2 (EfficientNet only), 4, 8 and 16, like PaDiM's ResNet layers 1–3: generic enough for
//! textures, late enough for context.

use crate::features::{Prep, PPOCR_LAYERS};
use crate::{Error, Result};
use edgeslim_data::assets::Assets;
use edgeslim_import::catalogue;
use edgeslim_import::convnet::BatchNorm;
use edgeslim_onnx::SaveOptions;
use std::path::PathBuf;

/// What `--backbone` means when it is not given.
pub const DEFAULT: &str = "efficientnet-lite0";
pub const NAMES: &[&str] = &["efficientnet-lite0", "mobilenetv2", "ppocr-det"];

/// EfficientNet-Lite0's stage outputs at strides 2, 4, 8, 16 (16, 24, 40, 80 channels).
pub const EFFICIENTNET_LAYERS: [&str; 4] = [
    "blocks.0.project_conv.out",
    "blocks.2.add.out",
    "blocks.4.add.out",
    "blocks.7.add.out",
];
/// MobileNetV2's stage outputs at strides 4, 8, 16 (24, 32, 96 channels).
pub const MOBILENETV2_LAYERS: [&str; 3] = [
    "features.3.add.out",
    "features.6.add.out",
    "features.13.add.out",
];

/// A resolved backbone: the ONNX file, its default layers and its input preparation.
#[derive(Debug, Clone)]
pub struct Named {
    pub path: PathBuf,
    pub layers: Vec<String>,
    pub prep: Prep,
}

/// The backbone called `name` for images of `height`×`width`, or `None` if no backbone has
/// that name.
pub fn named(name: &str, height: usize, width: usize, assets: &Assets) -> Result<Option<Named>> {
    let layers = match name {
        "ppocr-det" => {
            assets.ensure()?;
            return Ok(Some(Named {
                path: assets.ppocr_det(),
                layers: PPOCR_LAYERS.iter().map(|s| s.to_string()).collect(),
                prep: Prep::ppocr(),
            }));
        }
        "efficientnet-lite0" => EFFICIENTNET_LAYERS.to_vec(),
        "mobilenetv2" => MOBILENETV2_LAYERS.to_vec(),
        _ => return Ok(None),
    };
    if height != width {
        return Err(Error::option_value(
            "size",
            format!("{height}x{width}"),
            format!("the {name} backbone is imported for square images: give --size S"),
        ));
    }
    let entry = catalogue::find(name)?;
    let path = assets
        .root
        .join("zoo")
        .join(format!("{name}-{height}"))
        .join("model.onnx");
    if !path.is_file() {
        assets.ensure()?;
        let model = catalogue::import(entry, assets, height, BatchNorm::Fold)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        model.save(&path, &SaveOptions::default())?;
    }
    Ok(Some(Named {
        path,
        layers: layers.iter().map(|s| s.to_string()).collect(),
        prep: Prep {
            mean: entry.mean,
            std: entry.std,
            bgr: false,
        },
    }))
}
