//! MVTec-layout data sets from real textures and photographs, with synthetic defects.
//!
//! ```text
//! OUT/train/good/000.png ...          normal crops
//! OUT/test/good/000.png ...           normal crops from a held-out part of the source
//! OUT/test/<defect>/000.png ...       crops with one defect each
//! OUT/ground_truth/<defect>/000_mask.png
//! OUT/dataset.json                    source, sha256, seed, counts
//! ```
//! Textures (brick, grass, gravel) are stationary: train and test crops are drawn independently
//! from the whole image (like new pieces of the same material; test crops overlap training
//! crops in pixels), or with `disjoint` from the left 60 % and the rest, so no test pixel was
//! seen in training. Photographs
//! are treated like MVTec's object categories: one patch of the photo, crops jittered by a
//! few pixels, so train and test show the same "part". Every crop gets a small brightness
//! and contrast jitter (lighting on a line is never constant). Everything follows one seed.

use super::fit::open_rgb;
use crate::{Error, Result};
use edgeslim_runtime::fsutil::write_atomic;
use edgeslim_runtime::input::SplitMix64;
use image::{GrayImage, Luma, Rgb, RgbImage};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The defect kinds, named as their folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    Scratch,
    Hole,
    Stain,
    ColorShift,
    CutPaste,
}

impl Defect {
    pub const ALL: [Defect; 5] = [
        Defect::Scratch,
        Defect::Hole,
        Defect::Stain,
        Defect::ColorShift,
        Defect::CutPaste,
    ];

    pub fn folder(self) -> &'static str {
        match self {
            Defect::Scratch => "scratch",
            Defect::Hole => "hole",
            Defect::Stain => "stain",
            Defect::ColorShift => "color_shift",
            Defect::CutPaste => "cut_paste",
        }
    }
}

/// The stationary textures among scikit-image's data.
pub const TEXTURES: [&str; 3] = ["brick", "grass", "gravel"];

#[derive(Debug, Clone)]
pub struct MakeDataOptions {
    /// `brick`, `grass`, `gravel`, a photograph's name from the asset cache (`coffee`,
    /// `astronaut`, ...), or a path to any image.
    pub texture: String,
    pub seed: u64,
    pub out: PathBuf,
    pub size: u32,
    pub train: usize,
    pub test_good: usize,
    pub per_defect: usize,
    pub defects: Vec<Defect>,
    /// Textures: train on the left 60 % of the source and test on the rest (no test pixel
    /// seen in training) instead of drawing both from the whole texture.
    pub disjoint: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataSummary {
    pub source: String,
    pub source_sha256: String,
    pub mode: &'static str,
    pub seed: u64,
    pub size: u32,
    pub train_good: usize,
    pub test_good: usize,
    pub defects: Vec<(String, usize)>,
}

struct Rng(SplitMix64);

impl Rng {
    fn f(&mut self) -> f32 {
        self.0.next_f32()
    }
    fn range(&mut self, a: f32, b: f32) -> f32 {
        a + (b - a) * self.f()
    }
    fn int(&mut self, n: u32) -> u32 {
        (self.0.next_u64() % n.max(1) as u64) as u32
    }
    fn sign(&mut self) -> f32 {
        if self.f() < 0.5 {
            -1.0
        } else {
            1.0
        }
    }
}

/// Resolve `--texture` to an image path: a file, else a name in the asset cache.
pub fn source_path(texture: &str, assets: &edgeslim_data::assets::Assets) -> Result<PathBuf> {
    let p = Path::new(texture);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    for ext in ["png", "jpg"] {
        let c = assets.image(&format!("{texture}.{ext}"));
        if c.is_file() {
            return Ok(c);
        }
    }
    let names: Vec<String> = assets
        .image_names()
        .iter()
        .map(|n| {
            n.rsplit_once('.')
                .map(|(a, _)| a.to_string())
                .unwrap_or(n.clone())
        })
        .collect();
    Err(Error::option_value(
        "texture",
        texture,
        format!(
            "not a file and not in the asset cache ({}); known: {}",
            assets.root.display(),
            if names.is_empty() {
                "none yet, run `edgeslim assets fetch`".to_string()
            } else {
                names.join(", ")
            }
        ),
    ))
}

/// Crop with brightness/contrast jitter, optional flips and quarter turns (textures only).
fn crop(src: &RgbImage, x: u32, y: u32, s: u32, rng: &mut Rng, turn: bool) -> RgbImage {
    let mut c = image::imageops::crop_imm(src, x, y, s, s).to_image();
    if turn {
        if rng.f() < 0.5 {
            c = image::imageops::flip_horizontal(&c);
        }
        if rng.f() < 0.5 {
            c = image::imageops::flip_vertical(&c);
        }
    }
    let gain = rng.range(0.96, 1.04);
    let offset = rng.range(-6.0, 6.0);
    for p in c.pixels_mut() {
        for v in p.0.iter_mut() {
            *v = (*v as f32 * gain + offset).round().clamp(0.0, 255.0) as u8;
        }
    }
    c
}

/// Where crops may come from: (x range, y range) of the top-left corner.
struct Region {
    x0: u32,
    x1: u32,
    y0: u32,
    y1: u32,
}

impl Region {
    fn pick(&self, rng: &mut Rng) -> (u32, u32) {
        (
            self.x0 + rng.int(self.x1 - self.x0 + 1),
            self.y0 + rng.int(self.y1 - self.y0 + 1),
        )
    }
}

/// Blend `c` into pixel (x, y) with weight a.
fn blend(img: &mut RgbImage, x: i64, y: i64, c: [f32; 3], a: f32) {
    let (w, h) = img.dimensions();
    if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
        return;
    }
    let p = img.get_pixel_mut(x as u32, y as u32);
    for i in 0..3 {
        p[i] = ((1.0 - a) * p[i] as f32 + a * c[i])
            .round()
            .clamp(0.0, 255.0) as u8;
    }
}

fn luma(p: &Rgb<u8>) -> f32 {
    0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
}

/// A smooth blob: a few Gaussian splats; returns the field over the image.
fn blob_field(s: u32, rng: &mut Rng, radius: (f32, f32)) -> Vec<f32> {
    let n = s as usize;
    let cx = rng.range(0.2, 0.8) * s as f32;
    let cy = rng.range(0.2, 0.8) * s as f32;
    let r = rng.range(radius.0, radius.1) * s as f32;
    let splats: Vec<(f32, f32, f32)> = (0..3 + rng.int(4))
        .map(|_| {
            (
                cx + rng.range(-r, r) * 0.7,
                cy + rng.range(-r, r) * 0.7,
                r * rng.range(0.35, 0.7),
            )
        })
        .collect();
    let mut f = vec![0.0f32; n * n];
    for y in 0..n {
        for x in 0..n {
            f[y * n + x] = splats
                .iter()
                .map(|&(sx, sy, sr)| {
                    let d2 = (x as f32 - sx).powi(2) + (y as f32 - sy).powi(2);
                    (-d2 / (2.0 * sr * sr)).exp()
                })
                .sum();
        }
    }
    f
}

/// Apply one defect; returns the mask.
fn apply(defect: Defect, img: &mut RgbImage, src: &RgbImage, rng: &mut Rng) -> GrayImage {
    let s = img.width();
    let n = s as usize;
    let mut mask = GrayImage::new(s, s);
    match defect {
        Defect::Scratch => {
            // A quadratic Bézier, drawn as anti-aliased discs, lighter or darker than the
            // surface (a scratch exposes brighter material or collects dirt).
            let p0 = (
                rng.range(0.1, 0.9) * s as f32,
                rng.range(0.1, 0.9) * s as f32,
            );
            let ang = rng.range(0.0, std::f32::consts::TAU);
            let len = rng.range(0.3, 0.6) * s as f32;
            let p2 = (p0.0 + len * ang.cos(), p0.1 + len * ang.sin());
            let bend = rng.range(-0.25, 0.25) * len;
            let p1 = (
                (p0.0 + p2.0) / 2.0 - bend * ang.sin(),
                (p0.1 + p2.1) / 2.0 + bend * ang.cos(),
            );
            let width = rng.range(1.2, 2.6);
            let light = rng.f() < 0.6;
            let steps = (len * 2.0) as usize;
            let mut alpha = vec![0.0f32; n * n];
            for i in 0..=steps {
                let t = i as f32 / steps as f32;
                let u = 1.0 - t;
                let x = u * u * p0.0 + 2.0 * u * t * p1.0 + t * t * p2.0;
                let y = u * u * p0.1 + 2.0 * u * t * p1.1 + t * t * p2.1;
                let r = width / 2.0;
                for yy in (y - r - 1.0).floor() as i64..=(y + r + 1.0).ceil() as i64 {
                    for xx in (x - r - 1.0).floor() as i64..=(x + r + 1.0).ceil() as i64 {
                        if xx < 0 || yy < 0 || xx >= n as i64 || yy >= n as i64 {
                            continue;
                        }
                        let d = ((xx as f32 - x).powi(2) + (yy as f32 - y).powi(2)).sqrt();
                        let a = (r + 0.5 - d).clamp(0.0, 1.0);
                        let k = yy as usize * n + xx as usize;
                        alpha[k] = alpha[k].max(a);
                    }
                }
            }
            let strength = rng.range(0.6, 0.9);
            for (k, &a) in alpha.iter().enumerate() {
                if a <= 0.0 {
                    continue;
                }
                let (x, y) = ((k % n) as u32, (k / n) as u32);
                let l = luma(img.get_pixel(x, y));
                let target = if light {
                    (l + 110.0).min(250.0)
                } else {
                    l * 0.25
                };
                blend(img, x as i64, y as i64, [target; 3], a * strength);
                if a > 0.25 {
                    mask.put_pixel(x, y, Luma([255]));
                }
            }
        }
        Defect::Hole => {
            // A dark pit with a lit rim on one side and a shadow on the other.
            let r = rng.range(0.03, 0.07) * s as f32;
            let (cx, cy) = (
                rng.range(0.15, 0.85) * s as f32,
                rng.range(0.15, 0.85) * s as f32,
            );
            let squash = rng.range(0.7, 1.0);
            let light = rng.range(0.0, std::f32::consts::TAU);
            for y in 0..s {
                for x in 0..s {
                    let dx = x as f32 - cx;
                    let dy = (y as f32 - cy) / squash;
                    let d = (dx * dx + dy * dy).sqrt() / r;
                    if d < 1.0 {
                        let depth = 0.12 + 0.25 * d * d;
                        let l = luma(img.get_pixel(x, y)) * depth;
                        blend(img, x as i64, y as i64, [l, l * 0.95, l * 0.9], 0.95);
                        mask.put_pixel(x, y, Luma([255]));
                    } else if d < 1.35 {
                        let side = (dx * light.cos() + dy * light.sin()) / (d * r);
                        let a = (1.35 - d) / 0.35 * 0.6;
                        let c = if side > 0.0 { 235.0 } else { 30.0 };
                        blend(img, x as i64, y as i64, [c; 3], a * side.abs());
                        if d < 1.15 {
                            mask.put_pixel(x, y, Luma([255]));
                        }
                    }
                }
            }
        }
        Defect::Stain | Defect::ColorShift => {
            let stain = defect == Defect::Stain;
            let f = blob_field(s, rng, if stain { (0.06, 0.14) } else { (0.1, 0.2) });
            // Stains: a dark, brownish multiplicative film. Colour shifts: the surface's own
            // texture with its colour moved (a discoloured, faded or burnt area).
            let tint: [f32; 3] = if stain {
                let k = rng.range(0.45, 0.7);
                [k, k * 0.85, k * 0.6]
            } else {
                let t = rng.int(3);
                match t {
                    0 => [1.25, 0.9, 0.8],
                    1 => [0.8, 1.1, 1.3],
                    _ => [1.2, 1.15, 0.7],
                }
            };
            for y in 0..s {
                for x in 0..s {
                    let v = f[y as usize * n + x as usize];
                    let a = ((v - 0.35) / 0.3).clamp(0.0, 1.0);
                    if a <= 0.0 {
                        continue;
                    }
                    let p = *img.get_pixel(x, y);
                    let c = [0, 1, 2].map(|i| {
                        (p[i] as f32 * tint[i] + if stain { 0.0 } else { 12.0 * tint[i] })
                            .min(255.0)
                    });
                    blend(img, x as i64, y as i64, c, a);
                    if v > 0.5 {
                        mask.put_pixel(x, y, Luma([255]));
                    }
                }
            }
        }
        Defect::CutPaste => {
            // A patch from elsewhere in the source, turned by a random angle: the material is
            // right, its structure is not (CutPaste, Li et al. 2021).
            let pw = (rng.range(0.15, 0.3) * s as f32) as u32;
            let ph = (rng.range(0.15, 0.3) * s as f32) as u32;
            let (sw, sh) = src.dimensions();
            let diag = ((pw * pw + ph * ph) as f32).sqrt().ceil() as u32 + 2;
            let sx = rng.int(sw.saturating_sub(diag).max(1)) + diag / 2;
            let sy = rng.int(sh.saturating_sub(diag).max(1)) + diag / 2;
            let (dx, dy) = (rng.int(s - pw), rng.int(s - ph));
            let ang = rng.range(0.5, 2.6) * rng.sign();
            let (ca, sa) = (ang.cos(), ang.sin());
            let gain = rng.range(0.9, 1.1);
            for y in 0..ph {
                for x in 0..pw {
                    let (u, v) = (x as f32 - pw as f32 / 2.0, y as f32 - ph as f32 / 2.0);
                    let qx = (sx as f32 + ca * u - sa * v).round() as i64;
                    let qy = (sy as f32 + sa * u + ca * v).round() as i64;
                    if qx < 0 || qy < 0 || qx >= sw as i64 || qy >= sh as i64 {
                        continue;
                    }
                    let p = src.get_pixel(qx as u32, qy as u32);
                    let c = [0, 1, 2].map(|i| (p[i] as f32 * gain).min(255.0));
                    blend(img, (dx + x) as i64, (dy + y) as i64, c, 1.0);
                    mask.put_pixel(dx + x, dy + y, Luma([255]));
                }
            }
        }
    }
    mask
}

fn save_png(path: &Path, img: &image::DynamicImage) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::Other(format!("{}: encoding PNG: {e}", path.display())))?;
    Ok(write_atomic(path, buf.get_ref())?)
}

/// Write the data set.
pub fn make_data(
    o: &MakeDataOptions,
    assets: &edgeslim_data::assets::Assets,
) -> Result<DataSummary> {
    let src_path = source_path(&o.texture, assets)?;
    let src = open_rgb(&src_path)?;
    let (w, h) = src.dimensions();
    let s = o.size;
    let name = src_path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let texture = TEXTURES.contains(&name.as_str());
    let too_small = |need_w: u32, need_h: u32| {
        Error::option_value("size", s, format!(
            "{}: {w}x{h} is too small for {s}px crops ({} needs {need_w}x{need_h}); choose smaller crops",
            src_path.display(),
            if texture { "a train/test split" } else { "jittered patches" }
        ))
    };
    let (train_region, test_region) = if texture {
        if o.disjoint {
            // Left 60 % for training, the rest for testing: disjoint pixels. A left/right
            // split gives both sides the full height, so perspective (brick: the courses grow
            // towards the bottom) does not separate train from test; the random flips cover
            // the mirrored slant of the two sides.
            let split = (w as f32 * 0.6) as u32;
            if h < s || split < s || w - split < s {
                return Err(too_small((5 * s).div_ceil(2), s));
            }
            (
                Region {
                    x0: 0,
                    x1: split - s,
                    y0: 0,
                    y1: h - s,
                },
                Region {
                    x0: split,
                    x1: w - s,
                    y0: 0,
                    y1: h - s,
                },
            )
        } else {
            // Train and test crops drawn independently from the whole texture: a 512-px
            // photograph holds few disjoint 192-px crops, and a held-out strip is a place
            // the training crops never covered (docs/results/anomaly.md measures both).
            if w < s || h < s {
                return Err(too_small(s, s));
            }
            let r = Region {
                x0: 0,
                x1: w - s,
                y0: 0,
                y1: h - s,
            };
            (Region { ..r }, r)
        }
    } else {
        let j = (s / 16).max(2);
        if w < s + 2 * j || h < s + 2 * j {
            return Err(too_small(s + 2 * j, s + 2 * j));
        }
        // The patch at the centre: photos put their subject there.
        let (cx, cy) = ((w - s) / 2, (h - s) / 2);
        let r = Region {
            x0: cx - j,
            x1: cx + j,
            y0: cy - j,
            y1: cy + j,
        };
        (Region { ..r }, r)
    };
    let mut rng = Rng(SplitMix64(o.seed));
    let out = &o.out;
    let total = o.train + o.test_good + o.per_defect * o.defects.len();
    let pb = indicatif::ProgressBar::new(total as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("make-data [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for i in 0..o.train {
        let (x, y) = train_region.pick(&mut rng);
        let c = crop(&src, x, y, s, &mut rng, texture);
        save_png(&out.join(format!("train/good/{i:03}.png")), &c.into())?;
        pb.inc(1);
    }
    for i in 0..o.test_good {
        let (x, y) = test_region.pick(&mut rng);
        let c = crop(&src, x, y, s, &mut rng, texture);
        save_png(&out.join(format!("test/good/{i:03}.png")), &c.into())?;
        pb.inc(1);
    }
    let mut counts = Vec::new();
    for &d in &o.defects {
        for i in 0..o.per_defect {
            let (x, y) = test_region.pick(&mut rng);
            let mut c = crop(&src, x, y, s, &mut rng, texture);
            let mask = apply(d, &mut c, &src, &mut rng);
            save_png(
                &out.join(format!("test/{}/{i:03}.png", d.folder())),
                &c.into(),
            )?;
            save_png(
                &out.join(format!("ground_truth/{}/{i:03}_mask.png", d.folder())),
                &mask.into(),
            )?;
            pb.inc(1);
        }
        counts.push((d.folder().to_string(), o.per_defect));
    }
    pb.finish_and_clear();
    let summary = DataSummary {
        source: src_path.display().to_string(),
        source_sha256: edgeslim_data::assets::file_sha256(&src_path)
            .map(|(_, h)| h)
            .map_err(|e| Error::io(&src_path, e))?,
        mode: match (texture, o.disjoint) {
            (true, true) => "texture, disjoint split",
            (true, false) => "texture",
            (false, _) => "patch",
        },
        seed: o.seed,
        size: s,
        train_good: o.train,
        test_good: o.test_good,
        defects: counts,
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(&out.join("dataset.json"), &json)?;
    Ok(summary)
}
