//! What an exported anomaly detector says about itself, in the ONNX `metadata_props`.
//!
//! `edgeslim anomaly fit` writes it, `edgeslim eval` and `edgeslim-rt inspect` read it, so the
//! threshold and the score normalisation travel with the model and cannot be mismatched
//! after export. One JSON entry under [`META_KEY`] holds everything; a few flat keys repeat the
//! thresholds for tools that only want a number.

use serde::{Deserialize, Serialize};

/// The metadata_props key of the JSON description.
pub const META_KEY: &str = "edgeslim.anomaly";
/// Flat copies of the thresholds (raw score units).
pub const IMAGE_THRESHOLD_KEY: &str = "anomaly.image_threshold";
pub const PIXEL_THRESHOLD_KEY: &str = "anomaly.pixel_threshold";

/// One feature level of the detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelMeta {
    /// The backbone tensor the features come from.
    pub tensor: String,
    /// Feature dimension k (channels): the χ² degrees of freedom.
    pub channels: usize,
    /// Feature map size at the detector's input size.
    pub grid: [usize; 2],
    /// Ledoit–Wolf shrinkage intensity of the image-level (pooled) covariance, in [0, 1].
    pub shrinkage_image: f64,
    /// The same for the per-location covariance of the map.
    pub shrinkage_map: f64,
    /// sqrt of the χ²_k quantile at 1 − fpr: this level's share of the threshold.
    pub chi_quantile: f64,
    /// Normal feature vectors the Gaussians were fitted on (image level, map level).
    pub samples_image: usize,
    pub samples_map: usize,
}

/// A score (the image score or the anomaly map's pixels): threshold and normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreMeta {
    /// Scores above this are anomalous (raw units).
    pub threshold: f64,
    /// How the threshold was set, in words.
    pub threshold_rule: String,
    /// The lower anchor of the normalisation: normalised = clamp(0.5·(s − lo)/(threshold − lo),
    /// 0, 1), so `lo` ↦ 0 and the threshold ↦ 0.5 (anomalib's convention for exported models).
    pub norm_lo: f64,
    /// Statistics of this score on the normal training images, to judge calibration.
    pub normal_mean: f64,
    pub normal_std: f64,
    pub normal_max: f64,
}

impl ScoreMeta {
    pub fn normalise(&self, s: f64) -> f64 {
        let span = (self.threshold - self.norm_lo).max(1e-12);
        (0.5 * (s - self.norm_lo) / span).clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorMeta {
    /// Version of this layout.
    pub format: u32,
    /// The graph input: NCHW, RGB, float in [0, 1]; the graph applies the backbone's own
    /// normalisation and channel order itself.
    pub input: String,
    pub height: usize,
    pub width: usize,
    pub score_output: String,
    pub map_output: Option<String>,
    pub levels: Vec<LevelMeta>,
    /// The false-positive rate the χ² thresholds are set for.
    pub fpr: f64,
    pub image: ScoreMeta,
    pub map: Option<ScoreMeta>,
    /// How the levels combine.
    pub combine: String,
    pub backbone: String,
    pub backbone_sha256: String,
    pub normal_images: usize,
}

pub const FORMAT: u32 = 1;

impl DetectorMeta {
    /// Find and parse the description among a model's metadata entries.
    pub fn from_props<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<DetectorMeta, String> {
        let json = props
            .into_iter()
            .find(|(k, _)| *k == META_KEY)
            .map(|(_, v)| v)
            .ok_or_else(|| {
                format!(
                    "no '{META_KEY}' metadata: not a detector written by `edgeslim anomaly fit`"
                )
            })?;
        let m: DetectorMeta = serde_json::from_str(json)
            .map_err(|e| format!("metadata '{META_KEY}' does not parse: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "metadata '{META_KEY}' has format {}, this build reads format {FORMAT}",
                m.format
            ));
        }
        Ok(m)
    }

    /// The entries to store: the JSON plus flat threshold keys.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut v = vec![(
            META_KEY.to_string(),
            serde_json::to_string(self).expect("plain data serialises"),
        )];
        v.push((
            IMAGE_THRESHOLD_KEY.into(),
            format!("{}", self.image.threshold),
        ));
        if let Some(m) = &self.map {
            v.push((PIXEL_THRESHOLD_KEY.into(), format!("{}", m.threshold)));
        }
        v
    }

    /// Read the description from a model file (tract's protobuf types: no writer needed).
    pub fn read(path: &std::path::Path) -> crate::Result<DetectorMeta> {
        let bytes = std::fs::read(path).map_err(|e| crate::RuntimeError::io(path, e))?;
        let proto = crate::model::decode_proto(path, &bytes)?;
        DetectorMeta::from_props(
            proto
                .metadata_props
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str())),
        )
        .map_err(|reason| crate::RuntimeError::Data {
            path: path.into(),
            reason,
        })
    }
}
