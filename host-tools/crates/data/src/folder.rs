//! Users' own data: a folder with one sub-folder of images per class.
//!
//! ```text
//! DIR/cat/001.png
//! DIR/cat/002.jpg
//! DIR/dog/a.jpeg
//! ```
//! - Classes are the sub-folder names in sorted (byte) order: label `k` is the k-th name.
//!   Hidden entries (`.name`) and plain files at the top level are ignored.
//! - Images: `.png`, `.jpg`, `.jpeg` (any case); other files in a class folder are ignored.
//! - Every image is resized (bilinear, exactly as `edgeslim-rt run` does) to the given size and
//!   converted to grayscale (BT.601 luma) or RGB, scaled to [0, 1] and normalised.
//! - Held-out split: per class, the sorted file list is shuffled with the seed and the first
//!   `round(fraction · n)` files are held out (at least one when the fraction is positive and the
//!   class has two or more images), so every class is in both parts.
//! - Errors: a missing folder, fewer than two classes, a class folder without images, an image
//!   that does not decode (named), a class count that differs from the model's outputs
//!   ([`super::ImageSet::check_class_count`]).

use super::{data_error, rng, DataSource, ImageSet, Normalization, SplitData};
use crate::Result;
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FolderOptions {
    pub height: usize,
    pub width: usize,
    /// One channel (luma) instead of three (RGB).
    pub grayscale: bool,
    /// Share of each class held out, in [0, 1).
    pub held_out_fraction: f64,
    pub seed: u64,
    /// Per-channel statistics; `None` uses ImageNet's for RGB and 0.5/0.5 for grayscale.
    pub normalization: Option<Normalization>,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            height: 224,
            width: 224,
            grayscale: false,
            held_out_fraction: 0.2,
            seed: 0,
            normalization: None,
        }
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| crate::Error::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let p = e.map_err(|e| crate::Error::io(dir, e))?.path();
        if !hidden(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The classes (sorted sub-folder names) and their image files (sorted), checked: at least two
/// classes, none empty.
pub fn scan(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    if !dir.is_dir() {
        return Err(data_error(
            dir,
            "not a folder (expected DIR/<class>/*.png|jpg)",
        ));
    }
    let mut classes = Vec::new();
    for p in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files: Vec<PathBuf> = sorted_entries(&p)?
            .into_iter()
            .filter(|f| f.is_file() && is_image(f))
            .collect();
        if files.is_empty() {
            return Err(data_error(
                &p,
                format!("class folder '{name}' has no .png/.jpg images"),
            ));
        }
        classes.push((name, files));
    }
    if classes.len() < 2 {
        return Err(data_error(
            dir,
            format!(
                "{} class folder(s) found; a classifier needs at least 2 (DIR/<class>/*.png|jpg)",
                classes.len()
            ),
        ));
    }
    Ok(classes)
}

/// Decode, resize and normalise one image into `c · h · w` values.
pub fn load_image(
    path: &Path,
    height: usize,
    width: usize,
    grayscale: bool,
    norm: &Normalization,
) -> Result<Vec<f32>> {
    let img = edgeslim_runtime::input::open_image(path)
        .map_err(|e| data_error(path, format!("unreadable image: {e}")))?;
    let c = if grayscale { 1 } else { 3 };
    let t =
        edgeslim_runtime::input::image_to_tensor(&img, &[1, c, height, width], &norm.image_prep())
            .map_err(|e| data_error(path, e))?;
    edgeslim_runtime::input::tensor_to_f32_vec(&t).map_err(|e| data_error(path, e))
}

/// Load the folder and cut the seeded per-class held-out split.
pub fn load(dir: &Path, opts: &FolderOptions) -> Result<SplitData> {
    if !(0.0..1.0).contains(&opts.held_out_fraction) {
        return Err(crate::Error::Invalid(format!(
            "held-out fraction {} must be in [0, 1)",
            opts.held_out_fraction
        )));
    }
    if opts.height == 0 || opts.width == 0 {
        return Err(crate::Error::Invalid("image size must be positive".into()));
    }
    let channels = if opts.grayscale { 1 } else { 3 };
    let norm = opts.normalization.clone().unwrap_or_else(|| {
        if opts.grayscale {
            Normalization::uniform(1, 0.5, 0.5)
        } else {
            Normalization::imagenet()
        }
    });
    if norm.mean.len() != channels || norm.std.len() != channels {
        return Err(crate::Error::Invalid(format!(
            "normalisation has {} means and {} stds for {channels} channel(s)",
            norm.mean.len(),
            norm.std.len()
        )));
    }
    let classes = scan(dir)?;
    let mut all = ImageSet {
        classes: classes.iter().map(|(n, _)| n.clone()).collect(),
        channels,
        height: opts.height,
        width: opts.width,
        pixels: Vec::new(),
        labels: Vec::new(),
        sources: Vec::new(),
    };
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (label, (_, files)) in classes.iter().enumerate() {
        let first = all.len();
        for f in files {
            let px = load_image(f, opts.height, opts.width, opts.grayscale, &norm)?;
            all.pixels.extend_from_slice(&px);
            all.labels.push(label);
            all.sources.push(f.display().to_string());
        }
        let mut idx: Vec<usize> = (first..all.len()).collect();
        idx.shuffle(&mut rng(opts.seed, 0x464f_4c44 + label as u64));
        let n = idx.len();
        let mut n_held = (n as f64 * opts.held_out_fraction).round() as usize;
        if opts.held_out_fraction > 0.0 && n >= 2 {
            n_held = n_held.clamp(1, n - 1);
        }
        held.extend_from_slice(&idx[..n_held]);
        train.extend_from_slice(&idx[n_held..]);
    }
    train.sort_unstable();
    held.sort_unstable();
    Ok(SplitData {
        train: all.subset(&train),
        held_out: all.subset(&held),
        normalization: norm,
        split: format!(
            "seeded per class (seed {}): {:.0}% of each class held out ({} train / {} held out)",
            opts.seed,
            opts.held_out_fraction * 100.0,
            train.len(),
            held.len()
        ),
        source: DataSource {
            package: "folder".into(),
            path: dir.display().to_string(),
            sha256: None,
        },
    })
}
