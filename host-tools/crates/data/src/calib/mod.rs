//! Calibration and evaluation data for methods that look at activations (feature-space
//! low-rank, int8 ranges, rank search, fidelity reports).
//!
//! A data SPEC names where samples come from; loading it against a model's input shape gives
//! two disjoint splits: `calib` (statistics, rank search) and `held_out` (what reports quote).
//!
//! | SPEC | samples | labels | split |
//! |---|---|---|---|
//! | `ppocr-text` | windows along the text lines of scikit-image's `page.png` and their 180° rotations, PP-OCR resize-and-pad preprocessing | 0 = upright, 1 = rotated (the PP-OCR cls classes `0`, `180`) | by line: odd lines calibrate, even lines are held out |
//! | `ppocr-scenes` | windows of the input size over scikit-image's photographs with text at three scales, upright and rotated 180°, PaddleOCR det preprocessing ([`scenes`]) | none | by photograph: `page.png`, `logo.png` calibrate, `text.png` is held out |
//! | `mnist` | the 5000 real MNIST digits (`crate::mnist`) | digits | that module's fixed split (4000 / 1000, per class) |
//! | `images:DIR` | every PNG/JPEG in DIR (sorted), ImageNet normalisation | none | every fifth file held out |
//! | `npy:FILE` | a float array `[N, ...]`, one sample per row, already preprocessed | none | every fifth row held out |

pub mod files;
pub mod ppocr;
pub mod scenes;

use crate::{Error, Result};
use edgeslim_runtime::input::{image_to_tensor, open_image, tensor_to_f32_vec, ImagePrep};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where calibration/evaluation samples come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibSpec {
    PpocrText,
    PpocrScenes,
    Mnist,
    AnimalMnist,
    Images(PathBuf),
    Npy(PathBuf),
}

impl FromStr for CalibSpec {
    type Err = Error;

    /// The kinds of the one grammar (`crate::spec`) that give calibration and evaluation data.
    fn from_str(s: &str) -> Result<CalibSpec> {
        match s.parse::<crate::spec::Source>()? {
            crate::spec::Source::PpocrText => Ok(CalibSpec::PpocrText),
            crate::spec::Source::PpocrScenes => Ok(CalibSpec::PpocrScenes),
            crate::spec::Source::Mnist => Ok(CalibSpec::Mnist),
            crate::spec::Source::AnimalMnist => Ok(CalibSpec::AnimalMnist),
            crate::spec::Source::Images(p) => Ok(CalibSpec::Images(p)),
            crate::spec::Source::Npy(p) => Ok(CalibSpec::Npy(p)),
            other => Err(other.not_for(
                "calibration data",
                "ppocr-text, ppocr-scenes, mnist, animal-mnist, images:DIR or npy:FILE",
            )),
        }
    }
}

impl std::fmt::Display for CalibSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibSpec::PpocrText => write!(f, "ppocr-text"),
            CalibSpec::PpocrScenes => write!(f, "ppocr-scenes"),
            CalibSpec::Mnist => write!(f, "mnist"),
            CalibSpec::AnimalMnist => write!(f, "animal-mnist"),
            CalibSpec::Images(p) => write!(f, "images:{}", p.display()),
            CalibSpec::Npy(p) => write!(f, "npy:{}", p.display()),
        }
    }
}

/// Samples of one split, each shaped like the model's (batch-1) input.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// e.g. `ppocr-text (held out)`.
    pub name: String,
    /// The model input shape each sample fills, batch dimension included (`[1, 3, 48, 192]`).
    pub shape: Vec<usize>,
    /// One flat buffer per sample, `shape.iter().product()` values each.
    pub samples: Vec<Vec<f32>>,
    pub labels: Option<Vec<usize>>,
    /// Where each sample came from (file, crop box, row), for audits.
    pub sources: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Keep only the first `n` samples (deterministic, and the sources say which).
    pub fn truncate(&mut self, n: usize) {
        self.samples.truncate(n);
        self.sources.truncate(n);
        if let Some(l) = &mut self.labels {
            l.truncate(n);
        }
    }

    /// Keep every sample whose index passes `keep`.
    pub fn filter(&self, name: &str, keep: impl Fn(usize) -> bool) -> Dataset {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| keep(i)).collect();
        Dataset {
            name: name.to_string(),
            shape: self.shape.clone(),
            samples: idx.iter().map(|&i| self.samples[i].clone()).collect(),
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            sources: idx.iter().map(|&i| self.sources[i].clone()).collect(),
        }
    }
}

/// Both splits of a spec, and the rule that cut them (for reports).
#[derive(Debug, Clone)]
pub struct CalibData {
    pub spec: String,
    pub calib: Dataset,
    pub held_out: Dataset,
    pub split_rule: String,
}

/// The one input a calibrated model takes: its name and batch-1 shape.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ModelInput {
    /// The single float input of `model`, with a symbolic batch dimension set to 1. Models with
    /// several inputs are refused: calibration data fills one tensor.
    pub fn of(model: &edgeslim_onnx::OnnxModel) -> Result<ModelInput> {
        let vi = single_input(model)?;
        let dims = declared_dims(&vi);
        let shape: Option<Vec<usize>> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(v) if *v > 0 => Some(*v as usize),
                _ if i == 0 => Some(1),
                _ => None,
            })
            .collect();
        let shape = shape.filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::option(
                "input_shape",
                format!(
                    "{}: input '{}' has a non-batch dimension that is not fixed ({dims:?}); give \
                 its shape as {}=D0,D1,...",
                    model.label(),
                    vi.name,
                    vi.name
                ),
            )
        })?;
        Ok(ModelInput {
            name: vi.name.clone(),
            shape,
        })
    }

    /// The single input at the shape given with `--input-shape` (resolved against the declared
    /// dims by the runtime's own rule, the one tract loads with), or as declared ([`Self::of`])
    /// when none is given. The model is not changed: like `compress prune`, the tools that take
    /// `--input-shape` use it for calibration, shape inference and benchmarks and leave the
    /// written model's input as its author declared it (a dynamic backbone stays dynamic).
    pub fn resolve(
        model: &edgeslim_onnx::OnnxModel,
        input_shapes: &[edgeslim_runtime::InputShape],
    ) -> Result<ModelInput> {
        if input_shapes.is_empty() {
            return Self::of(model);
        }
        let vi = single_input(model)?;
        let declared = vec![(
            vi.name.clone(),
            edgeslim_onnx::optimize::shapes::declared(&vi),
        )];
        let label = PathBuf::from(model.label());
        let shape = edgeslim_runtime::model::resolve_input_shapes(&label, &declared, input_shapes)?
            .swap_remove(0);
        Ok(ModelInput {
            name: vi.name.clone(),
            shape,
        })
    }
}

fn single_input(model: &edgeslim_onnx::OnnxModel) -> Result<onnx_protobuf::ValueInfoProto> {
    let inputs = model.true_inputs();
    match inputs.as_slice() {
        [vi] => Ok((*vi).clone()),
        _ => Err(Error::Invalid(format!(
            "{}: calibration needs a model with exactly one input, it has {}",
            model.label(),
            inputs.len()
        ))),
    }
}

fn declared_dims(vi: &onnx_protobuf::ValueInfoProto) -> Vec<Option<i64>> {
    use onnx_protobuf::type_proto::Value;
    let Some(Value::TensorType(t)) = vi.type_.as_ref().and_then(|t| t.value.as_ref()) else {
        return Vec::new();
    };
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| d.has_dim_value().then(|| d.dim_value()))
                .collect()
        })
        .unwrap_or_default()
}

/// Load a spec for a model input. `max_calib` caps the calibration split (first samples).
pub fn load(spec: &CalibSpec, input: &ModelInput, max_calib: Option<usize>) -> Result<CalibData> {
    let mut data = match spec {
        CalibSpec::PpocrText => ppocr::load(input)?,
        CalibSpec::PpocrScenes => scenes::load(input)?,
        CalibSpec::Mnist | CalibSpec::AnimalMnist => load_labelled(spec, input)?,
        CalibSpec::Images(dir) => split_every_fifth(spec, load_images(dir, input)?),
        CalibSpec::Npy(file) => split_every_fifth(spec, load_npy(file, input)?),
    };
    if let Some(n) = max_calib {
        data.calib.truncate(n);
    }
    // An empty held-out split only means no fidelity report; no calibration data is an error.
    if data.calib.is_empty() {
        return Err(Error::Invalid(format!(
            "data '{spec}': the calibration split ({}) is empty",
            data.calib.name
        )));
    }
    Ok(data)
}

fn split_every_fifth(spec: &CalibSpec, all: Dataset) -> CalibData {
    CalibData {
        spec: spec.to_string(),
        calib: all.filter(&format!("{spec} (calibration)"), |i| i % 5 != 4),
        held_out: all.filter(&format!("{spec} (held out)"), |i| i % 5 == 4),
        split_rule: "every fifth sample (in sorted order) held out".into(),
    }
}

/// The error for samples that do not fit the model input.
pub fn shape_mismatch(spec: &str, sample: &[usize], input: &ModelInput) -> Error {
    Error::Invalid(format!(
        "data '{spec}': samples have shape {sample:?}, which does not fit the model input '{}' \
         {:?}",
        input.name, input.shape
    ))
}

/// Samples of `count` values fit an input of the same element count (a flat MLP input takes
/// 28×28 digits).
fn fits(sample: &[usize], input: &ModelInput) -> bool {
    sample.iter().product::<usize>() == input.shape.iter().product::<usize>()
}

/// MNIST or Animal-MNIST through the training engine's loader (one fixed split each for the
/// whole project): calibration on the training split, evaluation on the held-out one.
fn load_labelled(spec: &CalibSpec, input: &ModelInput) -> Result<CalibData> {
    let assets = crate::assets::Assets::open();
    assets.ensure()?;
    let split = if *spec == CalibSpec::AnimalMnist {
        crate::animal_mnist::load_assets(&assets)?
    } else {
        crate::mnist::load_assets(&assets)?
    };
    let spec = spec.to_string();
    let to_dataset = |set: &crate::ImageSet, name: &str| -> Result<Dataset> {
        let sample = [set.channels, set.height, set.width];
        if !fits(&sample, input) {
            return Err(shape_mismatch(&spec, &sample, input));
        }
        Ok(Dataset {
            name: name.to_string(),
            shape: input.shape.clone(),
            samples: (0..set.labels.len())
                .map(|i| set.image(i).to_vec())
                .collect(),
            labels: Some(set.labels.clone()),
            sources: set.sources.clone(),
        })
    };
    Ok(CalibData {
        calib: to_dataset(&split.train, &format!("{spec} (train split)"))?,
        held_out: to_dataset(&split.held_out, &format!("{spec} (held out)"))?,
        spec,
        split_rule: split.split.clone(),
    })
}

fn load_images(dir: &Path, input: &ModelInput) -> Result<Dataset> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "data 'images:{}': no .png/.jpg files in the folder",
            dir.display()
        )));
    }
    let prep = ImagePrep::default();
    let mut samples = Vec::new();
    for f in &files {
        let img = open_image(f)?;
        let t = image_to_tensor(&img, &input.shape, &prep).map_err(|why| {
            Error::Invalid(format!(
                "data 'images:{}': {why} (model input '{}')",
                dir.display(),
                input.name
            ))
        })?;
        samples.push(tensor_to_f32_vec(&t)?);
    }
    Ok(Dataset {
        name: format!("images:{}", dir.display()),
        shape: input.shape.clone(),
        samples,
        labels: None,
        sources: files.iter().map(|f| f.display().to_string()).collect(),
    })
}

fn load_npy(file: &Path, input: &ModelInput) -> Result<Dataset> {
    let t = edgeslim_runtime::input::read_npy(file)?;
    let shape = t.shape().to_vec();
    let spec = format!("npy:{}", file.display());
    let Some((&n, sample)) = shape.split_first() else {
        return Err(shape_mismatch(&spec, &shape, input));
    };
    if !fits(sample, input) {
        return Err(shape_mismatch(&spec, sample, input));
    }
    let values = tensor_to_f32_vec(&t)?;
    let per = values.len() / n.max(1);
    Ok(Dataset {
        name: spec,
        shape: input.shape.clone(),
        samples: values.chunks(per.max(1)).map(|c| c.to_vec()).collect(),
        labels: None,
        sources: (0..n).map(|i| format!("row {i}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        for s in ["ppocr-text", "mnist", "images:/tmp/x", "npy:a.npy"] {
            assert_eq!(s.parse::<CalibSpec>().unwrap().to_string(), s);
        }
        let e = "imgs:x".parse::<CalibSpec>().unwrap_err().to_string();
        assert!(e.contains("imgs:x") && e.contains("known: "), "{e}");
        assert!("npy:".parse::<CalibSpec>().is_err());
    }
}
