//! UltraMNIST-style images (Gupta et al. 2022, the benchmark of PatchGD): a few real MNIST
//! digits at very different scales on a large black canvas with distractor strokes; the label
//! is the sum of the digits.
//!
//! # DATA
//! - **Canvas**: `size`×`size` 8-bit gray (PNG), black; digits white as in MNIST, drawn with
//!   `max` so overlapping strokes stay white.
//! - **Digits**: 3 to 5 per image, from the real MNIST digits of [`crate::mnist`]. Training
//!   images take their digits from MNIST's training split only, test images from its held-out
//!   split only, so no digit instance is seen on both sides.
//! - **Label**: the sum of the digits, kept at most 27 by redrawing (28 classes, 0..=27, as in
//!   the paper).
//! - **Scales**: one digit large (side in [S/4, S/2]), one small (side in [S/64, S/16]: a few
//!   pixels on a 512 canvas), the others log-uniform in [S/64, S/2]; boxes do not overlap
//!   (rejection; a digit that finds no place after 200 tries is halved and tried again).
//! - **Distractors**: S/64 thin strokes (quadratic curves 1–3 px wide, S/32 to S/6 long,
//!   intensity 96–255) anywhere, crossing digits or not.
//! - **Split**: image `i` of `n` is drawn from ChaCha8 stream `i` of the seed; the first
//!   `round(0.8·n)` are `train/`, the rest `test/`. `labels.csv` lists `split,file,label,digits`
//!   (`digits` as `3+7+1`), `meta.json` the configuration.

use crate::mnist::{self, RawMnist};
use crate::{data_error, rng, Error, Result};
use image::{imageops, GrayImage, ImageBuffer, Luma};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest digit sum (the paper's 28 classes).
pub const MAX_SUM: usize = 27;
pub const CLASSES: usize = MAX_SUM + 1;
pub const TRAIN_FRACTION: f64 = 0.8;
const PLACE_TRIES: usize = 200;

/// What `edgeslim data ultramnist` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UltraConfig {
    pub size: u32,
    pub n: usize,
    pub seed: u64,
}

impl UltraConfig {
    pub fn check(&self) -> Result<()> {
        if self.size < 128 {
            return Err(Error::option_value(
                "size",
                self.size,
                "the canvas must be at least 128 pixels (the smallest digit is size/64)",
            ));
        }
        if self.size > 16384 {
            return Err(Error::option_value(
                "size",
                self.size,
                "at most 16384 pixels a side (a 16K canvas is 256 MiB per image)",
            ));
        }
        if self.n < 2 {
            return Err(Error::option_value(
                "n",
                self.n,
                "at least 2 images (one for each split)",
            ));
        }
        Ok(())
    }

    /// Images in the training split.
    pub fn train_count(&self) -> usize {
        ((self.n as f64 * TRAIN_FRACTION).round() as usize).clamp(1, self.n - 1)
    }
}

/// One digit on the canvas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub digit: usize,
    /// Row of the MNIST file it came from.
    pub mnist_row: usize,
    pub x: u32,
    pub y: u32,
    pub side: u32,
}

/// One generated image.
pub struct UltraImage {
    pub image: GrayImage,
    pub label: usize,
    pub digits: Vec<Placed>,
}

/// Image `index` of a run seeded with `seed`, its digits drawn from the MNIST rows `pool`.
pub fn generate(
    mnist: &RawMnist,
    pool: &[usize],
    size: u32,
    seed: u64,
    index: u64,
) -> Result<UltraImage> {
    if pool.is_empty() {
        return Err(Error::Invalid("no MNIST digits to draw from".into()));
    }
    let mut r = rng(seed, 0x0171_0000 + index);
    let count = r.random_range(3..=5usize);
    // Digits whose sum stays within the classes.
    let rows: Vec<usize> = loop {
        let rows: Vec<usize> = (0..count)
            .map(|_| pool[r.random_range(0..pool.len())])
            .collect();
        if rows.iter().map(|&i| mnist.labels[i]).sum::<usize>() <= MAX_SUM {
            break rows;
        }
    };
    let s = size as f64;
    let log_uniform = |r: &mut crate::Rng, lo: f64, hi: f64| -> u32 {
        (lo.ln() + r.random::<f64>() * (hi.ln() - lo.ln()))
            .exp()
            .round()
            .max(4.0) as u32
    };
    let mut sides: Vec<u32> = (0..count)
        .map(|k| match k {
            0 => log_uniform(&mut r, s / 4.0, s / 2.0),
            1 => log_uniform(&mut r, s / 64.0, s / 16.0),
            _ => log_uniform(&mut r, s / 64.0, s / 2.0),
        })
        .collect();
    // Large digits first: they need the room.
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(sides[k]));
    let mut canvas: GrayImage = ImageBuffer::new(size, size);
    let mut placed: Vec<Placed> = Vec::with_capacity(count);
    for k in order {
        let (x, y) = loop {
            let side = sides[k];
            let free = (0..PLACE_TRIES).find_map(|_| {
                let x = r.random_range(0..=size - side);
                let y = r.random_range(0..=size - side);
                let overlaps = placed.iter().any(|p| {
                    x < p.x + p.side && p.x < x + side && y < p.y + p.side && p.y < y + side
                });
                (!overlaps).then_some((x, y))
            });
            match free {
                Some(at) => break at,
                None => sides[k] = (side / 2).max(4),
            }
        };
        let row = rows[k];
        let side = sides[k];
        let digit = digit_image(mnist, row, side);
        for (dx, dy, p) in digit.enumerate_pixels() {
            let c = canvas.get_pixel_mut(x + dx, y + dy);
            c.0[0] = c.0[0].max(p.0[0]);
        }
        placed.push(Placed {
            digit: mnist.labels[row],
            mnist_row: row,
            x,
            y,
            side,
        });
    }
    for _ in 0..(size / 64).max(2) {
        stroke(&mut canvas, &mut r);
    }
    // Reading order (top to bottom, left to right) for the record.
    placed.sort_by_key(|p| (p.y, p.x));
    let label = placed.iter().map(|p| p.digit).sum();
    Ok(UltraImage {
        image: canvas,
        label,
        digits: placed,
    })
}

/// MNIST row `row` resized (bilinear) to `side`×`side`.
fn digit_image(mnist: &RawMnist, row: usize, side: u32) -> GrayImage {
    let px = &mnist.pixels[row * mnist::PIXELS..(row + 1) * mnist::PIXELS];
    let small: GrayImage = ImageBuffer::from_fn(mnist::SIDE as u32, mnist::SIDE as u32, |x, y| {
        Luma([px[y as usize * mnist::SIDE + x as usize]])
    });
    imageops::resize(&small, side, side, imageops::FilterType::Triangle)
}

/// A distractor: a quadratic curve, 1–3 px wide, stamped as discs every half pixel.
fn stroke(canvas: &mut GrayImage, r: &mut crate::Rng) {
    let s = canvas.width() as f64;
    let len = s / 32.0 + r.random::<f64>() * (s / 6.0 - s / 32.0);
    let (x0, y0) = (r.random::<f64>() * s, r.random::<f64>() * s);
    let a = r.random::<f64>() * std::f64::consts::TAU;
    let (x2, y2) = (x0 + len * a.cos(), y0 + len * a.sin());
    // The control point off the chord bends the stroke.
    let bend = (r.random::<f64>() - 0.5) * len;
    let (cx, cy) = (
        (x0 + x2) / 2.0 - bend * a.sin(),
        (y0 + y2) / 2.0 + bend * a.cos(),
    );
    let radius = 0.5 + r.random::<f64>();
    let value = r.random_range(96..=255u32) as u8;
    let steps = (2.0 * len).ceil() as usize + 1;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let u = 1.0 - t;
        let px = u * u * x0 + 2.0 * u * t * cx + t * t * x2;
        let py = u * u * y0 + 2.0 * u * t * cy + t * t * y2;
        disc(canvas, px, py, radius, value);
    }
}

fn disc(canvas: &mut GrayImage, x: f64, y: f64, radius: f64, value: u8) {
    let (w, h) = (canvas.width() as i64, canvas.height() as i64);
    let (lo_x, hi_x) = ((x - radius).floor() as i64, (x + radius).ceil() as i64);
    let (lo_y, hi_y) = ((y - radius).floor() as i64, (y + radius).ceil() as i64);
    for py in lo_y.max(0)..=hi_y.min(h - 1) {
        for px in lo_x.max(0)..=hi_x.min(w - 1) {
            let (dx, dy) = (px as f64 + 0.5 - x, py as f64 + 0.5 - y);
            if dx * dx + dy * dy <= radius * radius {
                let c = canvas.get_pixel_mut(px as u32, py as u32);
                c.0[0] = c.0[0].max(value);
            }
        }
    }
}

/// One line of `labels.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub split: String,
    pub file: String,
    pub label: usize,
    pub digits: Vec<usize>,
}

/// What was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    pub config: UltraConfig,
    pub train: usize,
    pub test: usize,
    /// Images per label (index = digit sum).
    pub label_counts: Vec<usize>,
    /// Smallest and largest digit side drawn, pixels.
    pub digit_sides: (u32, u32),
}

/// Write the data set into `dir` (which must not exist, or be an empty folder): everything
/// goes to a temporary folder beside it, renamed into place at the end, so an interrupted or
/// failed run leaves nothing. `each(i)` is called after image `i`; returning `false` stops
/// (the temporary folder is removed and an error returned).
pub fn write(
    mnist: &RawMnist,
    cfg: &UltraConfig,
    dir: &Path,
    mut each: impl FnMut(usize) -> bool,
) -> Result<Written> {
    cfg.check()?;
    crate::write_new_folder(dir, |tmp| write_into(mnist, cfg, tmp, &mut each))
}

fn write_into(
    mnist: &RawMnist,
    cfg: &UltraConfig,
    dir: &Path,
    each: &mut impl FnMut(usize) -> bool,
) -> Result<Written> {
    let (train_rows, test_rows) = mnist::split_indices(&mnist.labels);
    let n_train = cfg.train_count();
    for split in ["train", "test"] {
        let d = dir.join(split);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let mut csv = String::from("split,file,label,digits\n");
    let mut counts = vec![0usize; CLASSES];
    let mut sides = (u32::MAX, 0u32);
    let width = cfg.n.to_string().len().max(5);
    for i in 0..cfg.n {
        let (split, pool) = if i < n_train {
            ("train", &train_rows)
        } else {
            ("test", &test_rows)
        };
        let img = generate(mnist, pool, cfg.size, cfg.seed, i as u64)?;
        let file = format!("{split}/{i:0width$}.png");
        let path = dir.join(&file);
        img.image
            .save_with_format(&path, image::ImageFormat::Png)
            .map_err(|e| data_error(&path, format!("PNG encoding: {e}")))?;
        let digits: Vec<String> = img.digits.iter().map(|p| p.digit.to_string()).collect();
        csv.push_str(&format!(
            "{split},{file},{},{}\n",
            img.label,
            digits.join("+")
        ));
        counts[img.label] += 1;
        for p in &img.digits {
            sides = (sides.0.min(p.side), sides.1.max(p.side));
        }
        if !each(i) {
            return Err(Error::Invalid(format!(
                "stopped after {} of {} images; nothing written",
                i + 1,
                cfg.n
            )));
        }
    }
    let labels = dir.join("labels.csv");
    std::fs::write(&labels, csv).map_err(|e| Error::io(&labels, e))?;
    let written = Written {
        config: cfg.clone(),
        train: n_train,
        test: cfg.n - n_train,
        label_counts: counts,
        digit_sides: sides,
    };
    let meta = dir.join("meta.json");
    let json = serde_json::to_vec_pretty(&written).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&meta, json).map_err(|e| Error::io(&meta, e))?;
    Ok(written)
}

/// Read `dir/labels.csv`; errors name the file and the line.
pub fn read_labels(dir: &Path) -> Result<Vec<Entry>> {
    let path: PathBuf = dir.join("labels.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let at = |why: &str| data_error(&path, format!("line {}: {why}", i + 1));
        let f: Vec<&str> = line.split(',').collect();
        let [split, file, label, digits] = f[..] else {
            return Err(at("expected split,file,label,digits"));
        };
        if split != "train" && split != "test" {
            return Err(at("split is neither train nor test"));
        }
        let label: usize = label
            .parse()
            .ok()
            .filter(|&l| l < CLASSES)
            .ok_or_else(|| at("label is not a digit sum 0..=27"))?;
        let digits = digits
            .split('+')
            .map(|d| d.parse::<usize>().ok().filter(|&d| d < 10))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| at("digits are not written as 3+7+1"))?;
        if digits.iter().sum::<usize>() != label {
            return Err(at("the digits do not sum to the label"));
        }
        out.push(Entry {
            split: split.into(),
            file: file.into(),
            label,
            digits,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 classes × 10 rows of synthetic "digits" (a filled square of intensity 200).
    fn fake_mnist() -> RawMnist {
        let labels: Vec<usize> = (0..100).map(|i| i / 10).collect();
        let mut pixels = vec![0u8; 100 * mnist::PIXELS];
        for i in 0..100 {
            for y in 8..20 {
                for x in 8..20 {
                    pixels[i * mnist::PIXELS + y * mnist::SIDE + x] = 200;
                }
            }
        }
        RawMnist { pixels, labels }
    }

    #[test]
    fn images_follow_the_rules_and_the_seed() {
        let m = fake_mnist();
        let pool: Vec<usize> = (0..100).collect();
        for i in 0..20 {
            let a = generate(&m, &pool, 256, 5, i).unwrap();
            assert!((3..=5).contains(&a.digits.len()));
            assert!(a.label <= MAX_SUM);
            assert_eq!(a.label, a.digits.iter().map(|p| p.digit).sum::<usize>());
            for (j, p) in a.digits.iter().enumerate() {
                assert!(p.x + p.side <= 256 && p.y + p.side <= 256);
                for q in &a.digits[j + 1..] {
                    let apart = p.x + p.side <= q.x
                        || q.x + q.side <= p.x
                        || p.y + p.side <= q.y
                        || q.y + q.side <= p.y;
                    assert!(apart, "{p:?} overlaps {q:?}");
                }
            }
            // One large and one small digit.
            let max = a.digits.iter().map(|p| p.side).max().unwrap();
            let min = a.digits.iter().map(|p| p.side).min().unwrap();
            assert!(max >= 256 / 8 && min <= 256 / 16, "{max} {min}");
            let b = generate(&m, &pool, 256, 5, i).unwrap();
            assert_eq!(a.image, b.image);
        }
        let other = generate(&m, &pool, 256, 6, 0).unwrap();
        assert_ne!(other.image, generate(&m, &pool, 256, 5, 0).unwrap().image);
    }

    #[test]
    fn written_sets_are_complete_split_and_reread() {
        let m = fake_mnist();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("u");
        let cfg = UltraConfig {
            size: 128,
            n: 5,
            seed: 1,
        };
        let w = write(&m, &cfg, &dir, |_| true).unwrap();
        assert_eq!((w.train, w.test), (4, 1));
        let entries = read_labels(&dir).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries.iter().filter(|e| e.split == "test").count(), 1);
        let img = image::open(dir.join(&entries[0].file)).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (128, 128));
        // Never written over; a stopped run leaves nothing.
        assert!(write(&m, &cfg, &dir, |_| true).is_err());
        let dir2 = tmp.path().join("v");
        assert!(write(&m, &cfg, &dir2, |i| i < 2).is_err());
        assert!(!dir2.exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn bad_labels_name_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("labels.csv"),
            "split,file,label,digits\ntrain,a.png,9,3+6\ntrain,b.png,9,3+5\n",
        )
        .unwrap();
        let e = read_labels(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("labels.csv") && e.contains("line 3"), "{e}");
    }
}
