//! Patch-wise inference of a PatchGD model (`edgeslim train-patch`) in bounded memory: the
//! image is read strip by strip (a PNG's rows streamed from its decoder; other formats decoded
//! once to 8-bit gray, one byte per pixel), every strip of `patch` rows cut into patches, the
//! backbone run on groups of patches (groups shared out over threads), each patch's d-vector
//! written into the latent map Z [1, d, mh, mw]; one head pass on Z gives the logits and the
//! class activation map (each grid cell's share of every logit). Memory holds one strip, one
//! group of patches per thread and Z — never the image as a float tensor — so it stays flat as
//! the image grows. Sides that are not multiples of the patch are padded with black.

use crate::error::{Result, RuntimeError};
use crate::model::{LoadOptions, LoadedModel};
use crate::shapes::InputShape;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tract_onnx::prelude::Tensor;

/// Largest image side read (a 64K-pixel side is already 4 G pixels).
pub const MAX_SIDE: u32 = 65_536;

/// A head plan and the grid (rows, columns) it was planned for.
type PlannedHead = ((usize, usize), std::sync::Arc<LoadedModel>);

/// The two graphs and the geometry from `card.json`.
pub struct PatchModel {
    pub dir: PathBuf,
    backbone: LoadedModel,
    pub patch: usize,
    pub dim: usize,
    /// Patches per backbone pass.
    pub group: usize,
    pub threads: usize,
    /// The head planned for the last grid size (a folder of same-size images plans it once).
    head: std::sync::Mutex<Option<PlannedHead>>,
}

/// One image's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PatchOutput {
    pub input: String,
    pub width: u32,
    pub height: u32,
    /// Grid rows and columns.
    pub grid: (usize, usize),
    pub class: usize,
    pub probability: f32,
    pub logits: Vec<f32>,
    /// The predicted class's share of its logit per grid cell, row-major `grid.0 × grid.1`.
    pub contribution: Vec<f32>,
    pub fill_ms: f64,
    /// The head pass (planning it included when the grid size is new).
    pub head_ms: f64,
}

fn data(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Data {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl PatchModel {
    /// `dir` holds backbone.onnx, head.onnx and card.json.
    pub fn load(dir: &Path, group: usize, threads: usize) -> Result<PatchModel> {
        let card_path = dir.join("card.json");
        let bytes = std::fs::read(&card_path).map_err(|e| RuntimeError::io(&card_path, e))?;
        let card: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| data(&card_path, format!("not JSON: {e}")))?;
        let field = |ptr: &str| -> Result<usize> {
            card.pointer(ptr)
                .and_then(|v| v.as_u64())
                .filter(|&v| v > 0)
                .map(|v| v as usize)
                .ok_or_else(|| data(&card_path, format!("no positive '{ptr}'")))
        };
        let patch = field("/grid/patch")?;
        let dim = field("/dim")?;
        if field("/grid/channels")? != 1 {
            return Err(data(&card_path, "only gray (1-channel) models are read"));
        }
        let group = group.max(1);
        let backbone = LoadedModel::load(
            &dir.join("backbone.onnx"),
            &LoadOptions {
                input_shapes: vec![InputShape {
                    name: Some("patch".into()),
                    dims: vec![group, 1, patch, patch],
                }],
                ..Default::default()
            },
        )?;
        Ok(PatchModel {
            dir: dir.to_path_buf(),
            backbone,
            patch,
            dim,
            group,
            threads: threads.max(1),
            head: std::sync::Mutex::new(None),
        })
    }

    /// Classify one image.
    pub fn infer(&self, path: &Path) -> Result<PatchOutput> {
        let mut rows = Rows::open(path)?;
        let (w, h) = (rows.width, rows.height);
        let p = self.patch;
        let (mh, mw) = ((h as usize).div_ceil(p), (w as usize).div_ceil(p));
        let cells = mh * mw;
        let mut z = vec![0f32; self.dim * cells];
        let t0 = Instant::now();
        let mut strip = vec![0u8; p * w as usize];
        for r in 0..mh {
            strip.iter_mut().for_each(|v| *v = 0);
            rows.read_into(&mut strip, p)?;
            let feats = self.strip_features(&strip, w as usize, mw)?;
            for (c, f) in feats.chunks(self.dim).enumerate() {
                for (k, v) in f.iter().enumerate() {
                    z[k * cells + r * mw + c] = *v;
                }
            }
        }
        let fill_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let head_path = self.dir.join("head.onnx");
        let head = self.head_for(mh, mw)?;
        let zt = Tensor::from_shape(&[1, self.dim, mh, mw], &z)
            .map_err(|e| RuntimeError::tract(&head_path, "building Z", e))?;
        let out = head.run(vec![zt])?;
        let head_ms = t1.elapsed().as_secs_f64() * 1e3;
        let [logits, cam] = &out[..] else {
            return Err(data(&head_path, "expected two outputs: logits and cam"));
        };
        let logits = f32_values(logits, &head_path)?;
        let cam = f32_values(cam, &head_path)?;
        let (class, _) =
            logits
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let sum: f32 = logits.iter().map(|v| (v - max).exp()).sum();
        let probability = (logits[class] - max).exp() / sum;
        let contribution = cam
            .get(class * cells..(class + 1) * cells)
            .map(|c| c.iter().map(|v| v / cells as f32).collect())
            .ok_or_else(|| data(&head_path, "cam is not [1, classes, mh, mw]"))?;
        Ok(PatchOutput {
            input: path.display().to_string(),
            width: w,
            height: h,
            grid: (mh, mw),
            class,
            probability,
            logits,
            contribution,
            fill_ms,
            head_ms,
        })
    }

    /// The head planned for an `mh × mw` grid (kept for the next image of that size).
    fn head_for(&self, mh: usize, mw: usize) -> Result<std::sync::Arc<LoadedModel>> {
        let mut slot = self
            .head
            .lock()
            .map_err(|_| data(&self.dir, "the head's lock was poisoned"))?;
        if let Some((grid, m)) = slot.as_ref() {
            if *grid == (mh, mw) {
                return Ok(m.clone());
            }
        }
        let m = std::sync::Arc::new(LoadedModel::load(
            &self.dir.join("head.onnx"),
            &LoadOptions {
                input_shapes: vec![InputShape {
                    name: Some("z".into()),
                    dims: vec![1, self.dim, mh, mw],
                }],
                ..Default::default()
            },
        )?);
        *slot = Some(((mh, mw), m.clone()));
        Ok(m)
    }

    /// d-vectors of the `mw` patches of one strip (`patch` rows of `width` gray bytes),
    /// `group` patches per backbone pass, the groups shared out over the threads.
    fn strip_features(&self, strip: &[u8], width: usize, mw: usize) -> Result<Vec<f32>> {
        let groups: Vec<Vec<usize>> = (0..mw)
            .collect::<Vec<_>>()
            .chunks(self.group)
            .map(<[usize]>::to_vec)
            .collect();
        let run_group = |cols: &[usize]| -> Result<Vec<f32>> {
            let p = self.patch;
            let mut x = vec![0f32; self.group * p * p];
            for (g, &c) in cols.iter().enumerate() {
                for y in 0..p {
                    for xx in 0..p {
                        let col = c * p + xx;
                        if col < width {
                            x[g * p * p + y * p + xx] = strip[y * width + col] as f32 / 255.0;
                        }
                    }
                }
            }
            let t = Tensor::from_shape(&[self.group, 1, p, p], &x)
                .map_err(|e| RuntimeError::tract(&self.backbone.path, "building patches", e))?;
            let out = self.backbone.run(vec![t])?;
            let f = f32_values(&out[0], &self.backbone.path)?;
            Ok(f[..cols.len() * self.dim].to_vec())
        };
        let parts: Vec<Result<Vec<f32>>> = if self.threads > 1 && groups.len() > 1 {
            let per = groups.len().div_ceil(self.threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = groups
                    .chunks(per)
                    .map(|gs| s.spawn(move || gs.iter().map(|g| run_group(g)).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join().unwrap_or_else(|_| {
                            vec![Err(data(&self.dir, "a backbone thread panicked"))]
                        })
                    })
                    .collect()
            })
        } else {
            groups.iter().map(|g| run_group(g)).collect()
        };
        let mut feats = Vec::with_capacity(mw * self.dim);
        for part in parts {
            feats.extend(part?);
        }
        Ok(feats)
    }
}

fn f32_values(t: &Tensor, path: &Path) -> Result<Vec<f32>> {
    crate::input::tensor_to_f32_vec(t).map_err(|e| data(path, e.to_string()))
}

/// An image read top to bottom as 8-bit gray rows.
struct Rows {
    path: PathBuf,
    width: u32,
    height: u32,
    next: u32,
    source: Source,
}

enum Source {
    /// A non-interlaced PNG: rows straight from the decoder.
    Png(Box<png::Reader<BufReader<std::fs::File>>>, png::ColorType),
    /// Anything else, decoded once to gray bytes.
    Gray(image::GrayImage),
}

impl Rows {
    fn open(path: &Path) -> Result<Rows> {
        let is_png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if is_png {
            let f = std::fs::File::open(path).map_err(|e| RuntimeError::io(path, e))?;
            let mut dec = png::Decoder::new(BufReader::new(f));
            dec.set_transformations(png::Transformations::normalize_to_color8());
            let reader = dec
                .read_info()
                .map_err(|e| data(path, format!("not a readable PNG: {e}")))?;
            let info = reader.info();
            let (w, h, interlaced) = (info.width, info.height, info.interlaced);
            check_size(path, w, h)?;
            if !interlaced {
                let (ct, _) = reader.output_color_type();
                return Ok(Rows {
                    path: path.to_path_buf(),
                    width: w,
                    height: h,
                    next: 0,
                    source: Source::Png(Box::new(reader), ct),
                });
            }
        }
        let img = crate::input::open_image(path)?;
        check_size(path, img.width(), img.height())?;
        let gray = img.to_luma8();
        Ok(Rows {
            path: path.to_path_buf(),
            width: gray.width(),
            height: gray.height(),
            next: 0,
            source: Source::Gray(gray),
        })
    }

    /// The next `n` rows into `out` (`n · width` bytes; rows past the end stay as they are).
    fn read_into(&mut self, out: &mut [u8], n: usize) -> Result<()> {
        let w = self.width as usize;
        for i in 0..n {
            if self.next >= self.height {
                return Ok(());
            }
            let dst = &mut out[i * w..(i + 1) * w];
            match &mut self.source {
                Source::Png(reader, ct) => {
                    let row = reader
                        .next_row()
                        .map_err(|e| data(&self.path, format!("row {}: {e}", self.next)))?
                        .ok_or_else(|| data(&self.path, format!("ends at row {}", self.next)))?;
                    gray_row(row.data(), *ct, dst)
                        .map_err(|why| data(&self.path, format!("row {}: {why}", self.next)))?;
                }
                Source::Gray(g) => {
                    let y = self.next as usize;
                    dst.copy_from_slice(&g.as_raw()[y * w..(y + 1) * w]);
                }
            }
            self.next += 1;
        }
        Ok(())
    }
}

fn check_size(path: &Path, w: u32, h: u32) -> Result<()> {
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(data(
            path,
            format!("{w}×{h} pixels: sides must be 1..={MAX_SIDE}"),
        ));
    }
    Ok(())
}

/// One decoded 8-bit row as gray (Rec. 709 luma, as `image`'s `to_luma8`).
fn gray_row(src: &[u8], ct: png::ColorType, dst: &mut [u8]) -> std::result::Result<(), String> {
    let px = match ct {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("palette not expanded".into()),
    };
    if src.len() < dst.len() * px {
        return Err(format!("{} bytes for {} pixels", src.len(), dst.len()));
    }
    for (i, d) in dst.iter_mut().enumerate() {
        let s = &src[i * px..];
        *d = if px >= 3 {
            (0.2126 * s[0] as f32 + 0.7152 * s[1] as f32 + 0.0722 * s[2] as f32).round() as u8
        } else {
            s[0]
        };
    }
    Ok(())
}
