//! The Siamese tracking loop on tract: a template graph run once per (re-)initialisation, a
//! search graph run every frame on several scales at once.
//!
//! Per frame (SiamFC, Bertinetto et al. 2016, with its published hyper-parameters as defaults):
//! 1. crop `scales` square search windows of side `s_x · scale_step^k` around the last centre
//!    (SiamFC context crop, padded with the frame's mean colour), resize each to the graph's
//!    search size and run them as one batch against the template's kernel;
//! 2. penalise the non-unit scales (`scale_penalty`), take the scale whose response peaks
//!    highest;
//! 3. upsample that response (bicubic, `upscale`×), normalise it to sum 1 and blend it with a
//!    cosine (Hann) window (`window_influence`) so that small displacements are preferred;
//! 4. move the centre to the peak (response cells are `stride` search pixels apart), and move
//!    the size towards the chosen scale by `scale_lr` (the smoothed box update);
//! 5. confidence = sigmoid of the raw response peak (the network is trained with a logistic
//!    loss, so this reads as the probability that the peak is the target).
//!
//! Lost target: when the confidence stays below `lost_threshold` for `lost_after` frames the
//! tracker is *lost*: the box stays where it was and every frame searches a growing ring of
//! windows around it (widening search, one more ring every `lost_after` frames, up to
//! `max_rings`) at the last scale, until a window answers above `reacquire_threshold`.

use super::metrics::Rect;
use crate::error::{Result, RuntimeError};
use crate::model::{LoadOptions, LoadedModel};
use crate::shapes::InputShape;
use crate::tract_onnx::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Tracking hyper-parameters.
#[derive(Debug, Clone, Serialize)]
pub struct TrackerParams {
    /// Number of search scales per frame (odd).
    pub scales: usize,
    pub scale_step: f32,
    pub scale_penalty: f32,
    pub scale_lr: f32,
    pub window_influence: f32,
    pub upscale: usize,
    /// SiamFC context amount.
    pub context: f32,
    pub lost_threshold: f32,
    pub lost_after: usize,
    pub reacquire_threshold: f32,
    pub max_rings: usize,
    /// Smallest box side, pixels.
    pub min_size: f32,
}

impl Default for TrackerParams {
    fn default() -> Self {
        TrackerParams {
            scales: 3,
            scale_step: 1.0375,
            scale_penalty: 0.9745,
            scale_lr: 0.59,
            window_influence: 0.176,
            upscale: 8,
            context: 0.5,
            lost_threshold: 0.25,
            lost_after: 5,
            reacquire_threshold: 0.6,
            max_rings: 3,
            min_size: 4.0,
        }
    }
}

/// Where the two graphs of a tracker are: a folder with `template.onnx` and `search.onnx`, or
/// one of the two files (the other is found next to it).
pub fn tracker_files(model: &Path) -> Result<(PathBuf, PathBuf)> {
    let (t, s) = if model.is_dir() {
        (model.join("template.onnx"), model.join("search.onnx"))
    } else {
        let name = model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = model.parent().unwrap_or(Path::new("."));
        if name.contains("template") {
            (
                model.to_path_buf(),
                dir.join(name.replace("template", "search")),
            )
        } else if name.contains("search") {
            (
                dir.join(name.replace("search", "template")),
                model.to_path_buf(),
            )
        } else {
            return Err(RuntimeError::Data {
                path: model.into(),
                reason: "a tracker is a folder with template.onnx and search.onnx (or one of \
                         those two files)"
                    .into(),
            });
        }
    };
    for p in [&t, &s] {
        if !p.is_file() {
            return Err(RuntimeError::Data {
                path: p.clone(),
                reason: "missing: a tracker needs both template.onnx and search.onnx".into(),
            });
        }
    }
    Ok((t, s))
}

/// The pair of graphs, loaded and planned.
pub struct TrackerModel {
    pub template: LoadedModel,
    pub search: LoadedModel,
    pub template_size: usize,
    pub search_size: usize,
    pub response_size: usize,
    pub stride: f32,
    /// Scales per search call (the batch the search graph was planned for).
    pub batch: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

fn bad(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::Data {
        path: path.into(),
        reason,
    }
}

impl TrackerModel {
    /// Load both graphs; the search graph is planned for `batch` windows per call.
    pub fn load(model: &Path, batch: usize, threads: usize) -> Result<TrackerModel> {
        let (tp, sp) = tracker_files(model)?;
        let template = LoadedModel::load(
            &tp,
            &LoadOptions {
                threads,
                ..LoadOptions::default()
            },
        )?;
        let t_in = template
            .inputs
            .first()
            .ok_or_else(|| bad(&tp, "no input".into()))?;
        let tsz = match t_in.shape.as_slice() {
            [1, 3, h, w] if h == w => *h,
            other => {
                return Err(bad(
                    &tp,
                    format!(
                        "template input '{}' is {other:?}, expected [1, 3, T, T]",
                        t_in.name
                    ),
                ))
            }
        };
        let kernel_shape = template
            .outputs
            .first()
            .map(|o| o.shape.clone())
            .ok_or_else(|| bad(&tp, "no output".into()))?;
        // The search graph's size: read from its declared input (N is symbolic).
        let bytes = std::fs::read(&sp).map_err(|e| RuntimeError::io(&sp, e))?;
        let proto = crate::model::decode_proto(&sp, &bytes)?;
        let ssz = proto
            .graph
            .as_ref()
            .and_then(|g| g.input.iter().find(|i| i.name == "search"))
            .map(|vi| crate::model::declared_dims(vi).1)
            .and_then(|d| match d.get(2) {
                Some(crate::model::Dim::Fixed(v)) => Some(*v),
                _ => None,
            });
        let ssz = ssz.ok_or_else(|| {
            bad(
                &sp,
                "the search graph needs an input 'search' of shape [N, 3, S, S] with S fixed"
                    .into(),
            )
        })?;
        let search = LoadedModel::load(
            &sp,
            &LoadOptions {
                threads,
                input_shapes: vec![
                    InputShape {
                        name: Some("search".into()),
                        dims: vec![batch, 3, ssz, ssz],
                    },
                    InputShape {
                        name: Some("kernel".into()),
                        dims: kernel_shape.clone(),
                    },
                ],
                ..LoadOptions::default()
            },
        )?;
        super::pair_manifest::check(
            tp.parent().unwrap_or(Path::new(".")),
            &template.sha256,
            &search.sha256,
        )?;
        let m = match search.outputs.first().map(|o| o.shape.as_slice()) {
            Some([n, 1, a, b]) if *n == batch && a == b && *a > 1 => *a,
            other => {
                return Err(bad(
                    &sp,
                    format!("response is {other:?}, expected [{batch}, 1, m, m] with m > 1"),
                ))
            }
        };
        if ssz <= tsz || (ssz - tsz) % (m - 1) != 0 {
            return Err(bad(
                &sp,
                format!("search {ssz}, template {tsz} and response {m} do not give a whole stride"),
            ));
        }
        let stride = ((ssz - tsz) / (m - 1)) as f32;
        Ok(TrackerModel {
            template,
            search,
            template_size: tsz,
            search_size: ssz,
            response_size: m,
            stride,
            batch,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        })
    }

    /// Kernel of a template crop.
    pub fn embed(&self, crop: Tensor) -> Result<Tensor> {
        Ok(self.template.run(vec![crop])?.remove(0))
    }

    /// Responses `[batch, m·m]` of `batch` search crops against `kernel`.
    pub fn respond(&self, crops: Tensor, kernel: &Tensor) -> Result<Vec<Vec<f32>>> {
        let out = self.search.run(vec![crops, kernel.clone()])?;
        let v = crate::input::tensor_to_f32_vec(&out[0])?;
        let mm = self.response_size * self.response_size;
        Ok(v.chunks(mm).map(|c| c.to_vec()).collect())
    }
}

/// Mean colour of a frame (SiamFC's padding).
pub fn mean_colour(img: &image::RgbImage) -> [f32; 3] {
    let mut m = [0u64; 3];
    for p in img.pixels() {
        for (acc, &v) in m.iter_mut().zip(p.0.iter()) {
            *acc += v as u64;
        }
    }
    let n = (img.width() as u64 * img.height() as u64).max(1) as f32 * 255.0;
    [m[0] as f32 / n, m[1] as f32 / n, m[2] as f32 / n]
}

/// The SiamFC crop into `out[3·size·size]` (CHW, normalised): the square window of side
/// `side` centred at `(cx, cy)`, resampled bilinearly (with up to 4×4 sub-samples per output
/// pixel when shrinking), outside parts filled with `fill`. Same sampling as the training
/// data's crop (host `train::data::pixels::crop_square`).
#[allow(clippy::too_many_arguments)]
pub fn crop_into(
    img: &image::RgbImage,
    cx: f32,
    cy: f32,
    side: f32,
    size: usize,
    fill: [f32; 3],
    mean: &[f32; 3],
    std: &[f32; 3],
    out: &mut [f32],
) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let raw = img.as_raw();
    let iw = img.width() as usize;
    let sample = |x: f32, y: f32| -> [f32; 3] {
        if !(x >= 0.0 && y >= 0.0 && x <= w - 1.0 && y <= h - 1.0) {
            return fill;
        }
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let x1 = (x0 + 1).min(iw - 1);
        let y1 = (y0 + 1).min(h as usize - 1);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let p = |xx: usize, yy: usize, k: usize| raw[(yy * iw + xx) * 3 + k] as f32 / 255.0;
        let mut o = [0.0; 3];
        for (k, v) in o.iter_mut().enumerate() {
            let top = p(x0, y0, k) + (p(x1, y0, k) - p(x0, y0, k)) * fx;
            let bot = p(x0, y1, k) + (p(x1, y1, k) - p(x0, y1, k)) * fx;
            *v = top + (bot - top) * fy;
        }
        o
    };
    let step = side / size as f32;
    let sub = (step.ceil() as usize).clamp(1, 4);
    let left = cx - side / 2.0;
    let top = cy - side / 2.0;
    let plane = size * size;
    for j in 0..size {
        for i in 0..size {
            let mut acc = [0.0f32; 3];
            for sy in 0..sub {
                for sx in 0..sub {
                    let fx = left + (i as f32 + (sx as f32 + 0.5) / sub as f32) * step - 0.5;
                    let fy = top + (j as f32 + (sy as f32 + 0.5) / sub as f32) * step - 0.5;
                    let c = sample(fx, fy);
                    for k in 0..3 {
                        acc[k] += c[k];
                    }
                }
            }
            let n = (sub * sub) as f32;
            for k in 0..3 {
                out[k * plane + j * size + i] = (acc[k] / n - mean[k]) / std[k];
            }
        }
    }
}

/// What the tracker says about a frame.
#[derive(Debug, Clone, Serialize)]
pub struct TrackResult {
    /// The box `[x, y, w, h]`, pixels.
    pub rect: Rect,
    pub confidence: f32,
    pub state: TrackState,
    /// Template branch time of this frame (non-zero on (re-)initialisation only), ms.
    pub template_ms: f64,
    /// Search branch time (all windows of this frame), ms.
    pub search_ms: f64,
    /// Cropping and response post-processing, ms.
    pub prep_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackState {
    /// No target yet.
    Idle,
    Tracking,
    /// Low confidence for a few frames: searching wider.
    Lost,
}

/// One target being tracked.
pub struct Tracker<'m> {
    pub model: &'m TrackerModel,
    pub params: TrackerParams,
    kernel: Option<Tensor>,
    /// Centre and size (pixels).
    cx: f32,
    cy: f32,
    w: f32,
    h: f32,
    state: TrackState,
    low_frames: usize,
    lost_frames: usize,
    hann: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl<'m> Tracker<'m> {
    pub fn new(model: &'m TrackerModel, params: TrackerParams) -> Tracker<'m> {
        let n = (model.response_size - 1) * params.upscale.max(1) + 1;
        let hw: Vec<f32> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / (n as f32 - 1.0)).cos())
            .collect();
        let mut hann = vec![0.0; n * n];
        let mut sum = 0.0;
        for r in 0..n {
            for c in 0..n {
                hann[r * n + c] = hw[r] * hw[c];
                sum += hw[r] * hw[c];
            }
        }
        hann.iter_mut().for_each(|v| *v /= sum.max(1e-12));
        Tracker {
            model,
            params,
            kernel: None,
            cx: 0.0,
            cy: 0.0,
            w: 0.0,
            h: 0.0,
            state: TrackState::Idle,
            low_frames: 0,
            lost_frames: 0,
            hann,
        }
    }

    pub fn state(&self) -> TrackState {
        self.state
    }

    pub fn rect(&self) -> Rect {
        [
            self.cx - self.w / 2.0,
            self.cy - self.h / 2.0,
            self.w,
            self.h,
        ]
    }

    fn exemplar_side(&self) -> f32 {
        let p = self.params.context * (self.w + self.h);
        ((self.w + p) * (self.h + p)).sqrt()
    }

    /// Start (or restart) on `rect` in `frame`. The box must overlap the frame and have a
    /// positive size.
    pub fn init(&mut self, frame: &image::RgbImage, rect: Rect) -> Result<TrackResult> {
        let (fw, fh) = (frame.width() as f32, frame.height() as f32);
        let [x, y, w, h] = rect;
        if !(w.is_finite() && h.is_finite() && x.is_finite() && y.is_finite())
            || w < 1.0
            || h < 1.0
            || x + w <= 0.0
            || y + h <= 0.0
            || x >= fw
            || y >= fh
        {
            return Err(RuntimeError::Other(format!(
                "init box {x},{y},{w},{h} is outside the {fw}×{fh} frame or empty"
            )));
        }
        let t0 = Instant::now();
        self.cx = x + w / 2.0;
        self.cy = y + h / 2.0;
        self.w = w;
        self.h = h;
        let fill = mean_colour(frame);
        let m = self.model;
        let t = m.template_size;
        let mut buf = vec![0.0f32; 3 * t * t];
        let side = self.exemplar_side();
        crop_into(
            frame, self.cx, self.cy, side, t, fill, &m.mean, &m.std, &mut buf,
        );
        let prep = t0.elapsed().as_secs_f64() * 1e3;
        let crop = tract_ndarray::Array4::from_shape_vec((1, 3, t, t), buf)
            .map_err(|e| RuntimeError::Other(format!("template crop: {e}")))?
            .into_tensor();
        let t1 = Instant::now();
        self.kernel = Some(m.embed(crop)?);
        let template_ms = t1.elapsed().as_secs_f64() * 1e3;
        self.state = TrackState::Tracking;
        self.low_frames = 0;
        self.lost_frames = 0;
        Ok(TrackResult {
            rect: self.rect(),
            confidence: 1.0,
            state: self.state,
            template_ms,
            search_ms: 0.0,
            prep_ms: prep,
        })
    }

    /// Track into the next frame.
    pub fn update(&mut self, frame: &image::RgbImage) -> Result<TrackResult> {
        let Some(kernel) = self.kernel.clone() else {
            return Ok(TrackResult {
                rect: [f32::NAN; 4],
                confidence: 0.0,
                state: TrackState::Idle,
                template_ms: 0.0,
                search_ms: 0.0,
                prep_ms: 0.0,
            });
        };
        match self.state {
            TrackState::Lost => self.reacquire(frame, &kernel),
            _ => self.track(frame, &kernel),
        }
    }

    /// Run windows (centre, side) in batches of the planned size; returns each response.
    fn run_windows(
        &self,
        frame: &image::RgbImage,
        kernel: &Tensor,
        windows: &[(f32, f32, f32)],
        prep_ms: &mut f64,
        search_ms: &mut f64,
    ) -> Result<Vec<Vec<f32>>> {
        let m = self.model;
        let s = m.search_size;
        let fill = mean_colour(frame);
        let mut out = Vec::with_capacity(windows.len());
        for chunk in windows.chunks(m.batch) {
            let t0 = Instant::now();
            let mut buf = vec![0.0f32; m.batch * 3 * s * s];
            for (k, &(cx, cy, side)) in chunk.iter().enumerate() {
                crop_into(
                    frame,
                    cx,
                    cy,
                    side,
                    s,
                    fill,
                    &m.mean,
                    &m.std,
                    &mut buf[k * 3 * s * s..(k + 1) * 3 * s * s],
                );
            }
            let crops = tract_ndarray::Array4::from_shape_vec((m.batch, 3, s, s), buf)
                .map_err(|e| RuntimeError::Other(format!("search crops: {e}")))?
                .into_tensor();
            *prep_ms += t0.elapsed().as_secs_f64() * 1e3;
            let t1 = Instant::now();
            let r = m.respond(crops, kernel)?;
            *search_ms += t1.elapsed().as_secs_f64() * 1e3;
            out.extend(r.into_iter().take(chunk.len()));
        }
        Ok(out)
    }

    /// Bicubic (Catmull-Rom) upsampling of an m×m map to n×n, n = (m−1)·up + 1, as SiamFC
    /// does: unlike bilinear interpolation, its maximum can fall between response cells, which
    /// gives sub-stride positions.
    fn upsample(&self, r: &[f32]) -> Vec<f32> {
        let m = self.model.response_size;
        let up = self.params.upscale.max(1);
        let n = (m - 1) * up + 1;
        // Per output coordinate: the four source indices and their weights.
        let taps: Vec<([usize; 4], [f32; 4])> = (0..n)
            .map(|i| {
                let f = i as f32 / up as f32;
                let i0 = (f.floor() as usize).min(m - 1);
                let t = f - i0 as f32;
                let w = [
                    ((-0.5 * t + 1.0) * t - 0.5) * t,
                    (1.5 * t - 2.5) * t * t + 1.0,
                    ((-1.5 * t + 2.0) * t + 0.5) * t,
                    (0.5 * t - 0.5) * t * t,
                ];
                let idx = |d: isize| (i0 as isize + d).clamp(0, m as isize - 1) as usize;
                ([idx(-1), idx(0), idx(1), idx(2)], w)
            })
            .collect();
        // Rows first, then columns.
        let mut rows = vec![0.0f32; m * n];
        for y in 0..m {
            for (x, (ix, w)) in taps.iter().enumerate() {
                rows[y * n + x] = (0..4).map(|k| r[y * m + ix[k]] * w[k]).sum();
            }
        }
        let mut o = vec![0.0f32; n * n];
        for (y, (iy, w)) in taps.iter().enumerate() {
            for x in 0..n {
                o[y * n + x] = (0..4).map(|k| rows[iy[k] * n + x] * w[k]).sum();
            }
        }
        o
    }

    /// Peak of the windowed response: displacement from the crop centre in search-crop
    /// pixels.
    fn locate(&self, r: &[f32]) -> (f32, f32) {
        let up = self.upsample(r);
        let n = (self.model.response_size - 1) * self.params.upscale.max(1) + 1;
        let min = up.iter().copied().fold(f32::INFINITY, f32::min);
        let shifted: Vec<f32> = up.iter().map(|v| v - min).collect();
        let sum: f32 = shifted.iter().sum::<f32>().max(1e-12);
        let wi = self.params.window_influence;
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (i, (v, h)) in shifted.iter().zip(&self.hann).enumerate() {
            let s = (1.0 - wi) * v / sum + wi * h;
            if s > best.0 {
                best = (s, i);
            }
        }
        let c = (n as f32 - 1.0) / 2.0;
        let cell = self.model.stride / self.params.upscale.max(1) as f32;
        (
            ((best.1 % n) as f32 - c) * cell,
            ((best.1 / n) as f32 - c) * cell,
        )
    }

    fn track(&mut self, frame: &image::RgbImage, kernel: &Tensor) -> Result<TrackResult> {
        let m = self.model;
        let p = self.params.clone();
        let s_x = self.exemplar_side() * m.search_size as f32 / m.template_size as f32;
        let half = (p.scales.max(1) / 2) as i32;
        let factors: Vec<f32> = (-half..=half).map(|k| p.scale_step.powi(k)).collect();
        let windows: Vec<(f32, f32, f32)> = factors
            .iter()
            .map(|f| (self.cx, self.cy, s_x * f))
            .collect();
        let (mut prep_ms, mut search_ms) = (0.0, 0.0);
        let t0 = Instant::now();
        let responses = self.run_windows(frame, kernel, &windows, &mut prep_ms, &mut search_ms)?;
        let t1 = Instant::now();
        let mut best = (f32::NEG_INFINITY, 0usize, f32::NEG_INFINITY);
        for (k, r) in responses.iter().enumerate() {
            let peak = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let pen = if k as i32 == half {
                1.0
            } else {
                p.scale_penalty
            };
            // Penalise in probability space so negative logits are handled the same way.
            let score = sigmoid(peak) * pen;
            if score > best.0 {
                best = (score, k, peak);
            }
        }
        let (_, k, peak) = best;
        let (dx, dy) = self.locate(&responses[k]);
        let f = factors[k];
        let px = s_x * f / m.search_size as f32;
        self.cx += dx * px;
        self.cy += dy * px;
        let scale = 1.0 - p.scale_lr + p.scale_lr * f;
        self.w = (self.w * scale).max(p.min_size);
        self.h = (self.h * scale).max(p.min_size);
        let (fw, fh) = (frame.width() as f32, frame.height() as f32);
        self.cx = self.cx.clamp(0.0, fw);
        self.cy = self.cy.clamp(0.0, fh);
        self.w = self.w.min(fw);
        self.h = self.h.min(fh);
        let confidence = sigmoid(peak);
        if confidence < p.lost_threshold {
            self.low_frames += 1;
            if self.low_frames >= p.lost_after {
                self.state = TrackState::Lost;
                self.lost_frames = 0;
            }
        } else {
            self.low_frames = 0;
        }
        prep_ms += t1.elapsed().as_secs_f64() * 1e3;
        let _ = t0;
        Ok(TrackResult {
            rect: self.rect(),
            confidence,
            state: self.state,
            template_ms: 0.0,
            search_ms,
            prep_ms,
        })
    }

    /// Search a growing ring of windows around the last position at the last scale.
    fn reacquire(&mut self, frame: &image::RgbImage, kernel: &Tensor) -> Result<TrackResult> {
        let m = self.model;
        let p = self.params.clone();
        self.lost_frames += 1;
        let rings = (1 + self.lost_frames / p.lost_after.max(1)).min(p.max_rings.max(1));
        let s_x = self.exemplar_side() * m.search_size as f32 / m.template_size as f32;
        // Windows overlap by a quarter: the response covers (m−1)·stride search pixels.
        let reach = (m.response_size - 1) as f32 * m.stride * s_x / m.search_size as f32;
        let mut windows = vec![(self.cx, self.cy, s_x)];
        for ring in 1..=rings as i32 {
            for gy in -ring..=ring {
                for gx in -ring..=ring {
                    if gx.abs().max(gy.abs()) == ring {
                        windows.push((
                            self.cx + gx as f32 * reach * 0.75,
                            self.cy + gy as f32 * reach * 0.75,
                            s_x,
                        ));
                    }
                }
            }
        }
        let (fw, fh) = (frame.width() as f32, frame.height() as f32);
        windows.retain(|(x, y, _)| {
            *x > -s_x / 2.0 && *y > -s_x / 2.0 && *x < fw + s_x / 2.0 && *y < fh + s_x / 2.0
        });
        let (mut prep_ms, mut search_ms) = (0.0, 0.0);
        let responses = self.run_windows(frame, kernel, &windows, &mut prep_ms, &mut search_ms)?;
        let t1 = Instant::now();
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (k, r) in responses.iter().enumerate() {
            let peak = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if peak > best.0 {
                best = (peak, k);
            }
        }
        let confidence = sigmoid(best.0);
        if confidence >= p.reacquire_threshold {
            let (wx, wy, side) = windows[best.1];
            let (dx, dy) = self.locate(&responses[best.1]);
            let px = side / m.search_size as f32;
            self.cx = (wx + dx * px).clamp(0.0, fw);
            self.cy = (wy + dy * px).clamp(0.0, fh);
            self.state = TrackState::Tracking;
            self.low_frames = 0;
            self.lost_frames = 0;
        }
        prep_ms += t1.elapsed().as_secs_f64() * 1e3;
        Ok(TrackResult {
            rect: self.rect(),
            confidence,
            state: self.state,
            template_ms: 0.0,
            search_ms,
            prep_ms,
        })
    }
}
