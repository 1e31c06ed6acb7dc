//! An UltraMNIST-style folder (`edgeslim data ultramnist`) read batch by batch: images are
//! decoded when a batch needs them (a 2048² set never sits in memory whole), resized to the
//! training size when it differs, pixels scaled to [0, 1].

use crate::{Error, Result};
use edgeslim_data::ultramnist::{read_labels, Entry, CLASSES};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

pub struct UltraSet {
    pub dir: PathBuf,
    pub train: Vec<Entry>,
    pub test: Vec<Entry>,
    /// Side the images are used at.
    pub side: usize,
}

impl UltraSet {
    pub fn open(dir: &Path, side: usize) -> Result<UltraSet> {
        let entries = read_labels(dir)?;
        let (train, test): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.split == "train");
        if train.is_empty() || test.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: needs images in both splits ({} train, {} test)",
                dir.display(),
                train.len(),
                test.len()
            )));
        }
        Ok(UltraSet {
            dir: dir.to_path_buf(),
            train,
            test,
            side,
        })
    }

    pub fn classes(&self) -> usize {
        CLASSES
    }

    /// The images of `entries` as `[n, 1, side, side]` values in [0, 1], and their labels.
    pub fn batch(&self, entries: &[&Entry]) -> Result<(Vec<f32>, Vec<usize>)> {
        let s = self.side;
        let mut x = Vec::with_capacity(entries.len() * s * s);
        for e in entries {
            let path = self.dir.join(&e.file);
            let img = image::open(&path)
                .map_err(|err| Error::Invalid(format!("{}: {err}", path.display())))?
                .to_luma8();
            let img = if img.width() as usize != s || img.height() as usize != s {
                image::imageops::resize(&img, s as u32, s as u32, FilterType::Triangle)
            } else {
                img
            };
            x.extend(img.as_raw().iter().map(|&p| p as f32 / 255.0));
        }
        Ok((x, entries.iter().map(|e| e.label).collect()))
    }
}
