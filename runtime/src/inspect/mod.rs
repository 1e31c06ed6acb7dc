//! The inspection line: score each frame with an anomaly detector (tract), pass/fail against
//! the threshold stored in the model, overlay the heat-map, pulse the reject pin on failure.

pub mod meta;
mod overlay;
mod pipeline;

pub use meta::DetectorMeta;
pub use overlay::{heat_colour, overlay};
pub use pipeline::{run, InspectConfig, InspectSummary, Record, View, MAX_UNREADABLE_LISTED};

use crate::error::{Result, RuntimeError};
use crate::input::{image_to_tensor, tensor_to_f32_vec, ImagePrep};
use crate::model::{LoadOptions, LoadedModel};
use std::path::Path;
use std::time::Instant;
use tract_onnx::prelude::Tensor;

/// How frames become detector inputs: RGB scaled to [0, 1]; the detector graph applies its
/// backbone's normalisation itself.
pub fn unit_prep() -> ImagePrep {
    ImagePrep {
        scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        bgr: false,
    }
}

/// A frame as the detector's input tensor [1, 3, H, W] (bilinear resize).
pub fn frame_tensor(img: &image::RgbImage, height: usize, width: usize) -> Tensor {
    let dynimg = image::DynamicImage::ImageRgb8(img.clone());
    image_to_tensor(&dynimg, &[1, 3, height, width], &unit_prep())
        .expect("a [1, 3, H, W] shape always takes an RGB image")
}

/// An anomaly map at the detector's input size, row-major.
#[derive(Debug, Clone)]
pub struct Map {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// One scored frame.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub score: f64,
    /// The score through the stored normalisation: 0.5 at the threshold.
    pub normalised: f64,
    pub fail: bool,
    pub map: Option<Map>,
    pub infer_ms: f64,
}

/// A loaded detector and its metadata.
pub struct Inspector {
    pub model: LoadedModel,
    pub meta: DetectorMeta,
    score_ix: usize,
    map_ix: Option<usize>,
}

impl Inspector {
    pub fn load(path: &Path, threads: usize) -> Result<Inspector> {
        let meta = DetectorMeta::read(path)?;
        let opts = LoadOptions {
            threads: threads.max(1),
            ..Default::default()
        };
        let model = LoadedModel::load(path, &opts)?;
        let find = |name: &str| model.outputs.iter().position(|o| o.name == name);
        let score_ix = find(&meta.score_output).ok_or_else(|| RuntimeError::Data {
            path: path.into(),
            reason: format!(
                "metadata names score output '{}', which the graph does not have",
                meta.score_output
            ),
        })?;
        let map_ix = meta.map_output.as_deref().and_then(find);
        Ok(Inspector {
            model,
            meta,
            score_ix,
            map_ix,
        })
    }

    /// Score one frame against `threshold` (raw units; the stored one unless overridden).
    pub fn inspect(&self, img: &image::RgbImage, threshold: f64) -> Result<Inspection> {
        let t = Instant::now();
        let x = frame_tensor(img, self.meta.height, self.meta.width);
        let out = self.model.run(vec![x])?;
        let infer_ms = t.elapsed().as_secs_f64() * 1e3;
        let score = tensor_to_f32_vec(&out[self.score_ix])?
            .first()
            .copied()
            .ok_or_else(|| RuntimeError::Other("the score output is empty".into()))?
            as f64;
        let map = match self.map_ix {
            Some(ix) => Some(Map {
                width: self.meta.width,
                height: self.meta.height,
                data: tensor_to_f32_vec(&out[ix])?,
            }),
            None => None,
        };
        Ok(Inspection {
            score,
            normalised: self.meta.image.normalise(score),
            fail: score > threshold,
            map,
            infer_ms,
        })
    }
}
