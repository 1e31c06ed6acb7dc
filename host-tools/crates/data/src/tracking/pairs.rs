//! SiamFC training pairs.
//!
//! For pair `index` of a run seeded with `seed` (ChaCha8 stream `index`, so pairs can be made
//! in any order and in parallel), a random scene is drawn and rendered twice:
//! - **exemplar frame A**: the template is the SiamFC context window around the target
//!   (`s_z = sqrt((w + c(w+h)) (h + c(w+h)))`, c = 0.5) resized to `template_size`;
//! - **search frame B**: the target again, with a changed scale, rotation, light, maybe motion
//!   blur, a partial occluder and a distractor nearby. The search window has side
//!   `s_x = s_z · search_size / template_size` (the scale the tracker would use from A) and is
//!   centred so that the target's centre lands at `shift` pixels (search-crop pixels) from the
//!   crop's centre.
//!
//! The label is a `map_size × map_size` response map: cell `(r, c)` stands for the displacement
//! `((c − (m−1)/2) · stride, (r − (m−1)/2) · stride)` from the crop's centre (exact for valid
//! convolutions with odd `m`); it is 1 where that displacement is within `radius_px` of
//! `shift`, else 0. `weight` balances the two: positives share 0.5, negatives share 0.5
//! (SiamFC's balanced logistic loss).

use super::super::{rng, Normalization, Rng};
use super::scene::{context_window, siamfc_crop, Photos, Pose, Scene, State};
use crate::{Error, Result};
use image::Rgb32FImage;
use rand::RngExt;

#[derive(Debug, Clone, PartialEq)]
pub struct PairConfig {
    pub template_size: u32,
    pub search_size: u32,
    /// The network's total stride (search-crop pixels per response cell).
    pub stride: u32,
    pub map_size: u32,
    /// Positive radius, search-crop pixels.
    pub radius_px: f32,
    /// Largest displacement of the target from the search crop's centre, search-crop pixels
    /// (drawn uniformly in a disc).
    pub max_shift_px: f32,
    /// SiamFC context amount (0.5).
    pub context: f32,
    /// Frame size scenes are rendered at.
    pub frame: (u32, u32),
    pub normalization: Normalization,
    /// Largest scale ratio between A and B (and its inverse).
    pub max_scale_change: f32,
    /// Largest extra rotation in B, radians.
    pub max_rotation: f32,
    pub p_blur: f64,
    pub p_occlusion: f64,
    pub p_distractor: f64,
    pub illumination: bool,
}

impl PairConfig {
    /// SiamFC-style pairs for a network with these crop sizes and stride; the response map size
    /// is `(search − template) / stride + 1`.
    pub fn for_network(template_size: u32, search_size: u32, stride: u32) -> PairConfig {
        let map_size = search_size.saturating_sub(template_size) / stride.max(1) + 1;
        PairConfig {
            template_size,
            search_size,
            stride,
            map_size,
            radius_px: 2.0 * stride as f32,
            max_shift_px: ((map_size.saturating_sub(1) / 2) * stride) as f32 * 0.75,
            context: 0.5,
            frame: (320, 240),
            normalization: Normalization::imagenet(),
            max_scale_change: 1.25,
            max_rotation: 0.3,
            p_blur: 0.3,
            p_occlusion: 0.25,
            p_distractor: 0.4,
            illumination: true,
        }
    }

    /// The same target appearance in both frames (no scale, rotation, light, blur, occluder or
    /// distractor): only the displacement differs. For tests that compare pixels.
    pub fn plain(mut self) -> PairConfig {
        self.max_scale_change = 1.0;
        self.max_rotation = 0.0;
        self.p_blur = 0.0;
        self.p_occlusion = 0.0;
        self.p_distractor = 0.0;
        self.illumination = false;
        self
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| {
            Err(Error::Invalid(format!("tracking pairs: {field}: {why}")))
        };
        if self.template_size < 15 || self.search_size <= self.template_size {
            return bad(
                "template_size/search_size",
                format!(
                    "{} / {}: need 15 ≤ template < search",
                    self.template_size, self.search_size
                ),
            );
        }
        if self.stride == 0 || self.map_size == 0 || self.map_size.is_multiple_of(2) {
            return bad(
                "map_size",
                format!(
                    "{} with stride {}: need an odd size and a positive stride",
                    self.map_size, self.stride
                ),
            );
        }
        let reach = ((self.map_size - 1) / 2 * self.stride) as f32;
        if !(self.max_shift_px >= 0.0 && self.max_shift_px <= reach) {
            return bad(
                "max_shift_px",
                format!(
                    "{} must be in [0, {reach}] (the map's reach)",
                    self.max_shift_px
                ),
            );
        }
        if self.radius_px.is_nan() || self.radius_px <= 0.0 {
            return bad("radius_px", format!("{} must be positive", self.radius_px));
        }
        if self.max_scale_change.is_nan() || self.max_scale_change < 1.0 {
            return bad(
                "max_scale_change",
                format!("{} must be ≥ 1", self.max_scale_change),
            );
        }
        Ok(())
    }

    /// The displacement (search-crop pixels) that response cell `(row, col)` stands for.
    pub fn cell_offset(&self, row: usize, col: usize) -> [f32; 2] {
        let c = (self.map_size as f32 - 1.0) / 2.0;
        [
            (col as f32 - c) * self.stride as f32,
            (row as f32 - c) * self.stride as f32,
        ]
    }

    /// Label and balanced weight maps for a target at `shift`.
    pub fn label_maps(&self, shift: [f32; 2]) -> (Vec<f32>, Vec<f32>) {
        let m = self.map_size as usize;
        let mut label = vec![0.0f32; m * m];
        for r in 0..m {
            for c in 0..m {
                let [dx, dy] = self.cell_offset(r, c);
                let d = ((dx - shift[0]).powi(2) + (dy - shift[1]).powi(2)).sqrt();
                if d <= self.radius_px {
                    label[r * m + c] = 1.0;
                }
            }
        }
        let pos = label.iter().filter(|&&v| v > 0.0).count();
        let neg = m * m - pos;
        let weight = label
            .iter()
            .map(|&v| {
                if v > 0.0 {
                    0.5 / pos.max(1) as f32
                } else {
                    0.5 / neg.max(1) as f32
                }
            })
            .collect();
        (label, weight)
    }
}

/// One pair, normalised CHW.
#[derive(Debug, Clone)]
pub struct Pair {
    /// `[3, T, T]`.
    pub template: Vec<f32>,
    /// `[3, S, S]`.
    pub search: Vec<f32>,
    /// `[m, m]`, 1 = positive.
    pub label: Vec<f32>,
    /// `[m, m]`, balanced.
    pub weight: Vec<f32>,
    /// Target centre minus search-crop centre, search-crop pixels.
    pub shift: [f32; 2],
    /// Target scale in B over A.
    pub scale_ratio: f32,
}

/// The crops of a pair before normalisation (for inspection and tests).
pub struct PairImages {
    pub template: Rgb32FImage,
    pub search: Rgb32FImage,
    pub shift: [f32; 2],
    pub scale_ratio: f32,
}

/// A batch of pairs, NCHW.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// `[n, 3, T, T]`.
    pub template: Vec<f32>,
    /// `[n, 3, S, S]`.
    pub search: Vec<f32>,
    /// `[n, 1, m, m]`.
    pub label: Vec<f32>,
    /// `[n, 1, m, m]`.
    pub weight: Vec<f32>,
    pub shifts: Vec<[f32; 2]>,
    pub n: usize,
}

pub struct PairGenerator<'a> {
    photos: &'a Photos,
    pub config: PairConfig,
}

fn pose(cx: f32, cy: f32, scale: f32, angle: f32) -> Pose {
    Pose {
        cx,
        cy,
        scale,
        angle,
        blur: [0.0, 0.0],
    }
}

impl<'a> PairGenerator<'a> {
    pub fn new(photos: &'a Photos, config: PairConfig) -> Result<PairGenerator<'a>> {
        config.validate()?;
        Ok(PairGenerator { photos, config })
    }

    fn light(&self, r: &mut Rng) -> (f32, f32, f32) {
        if self.config.illumination {
            (
                r.random_range(0.65f32..1.35),
                r.random_range(-0.05f32..0.05),
                r.random_range(0.0f32..0.3),
            )
        } else {
            (1.0, 0.0, 0.0)
        }
    }

    /// The crops of pair `index` of the run seeded with `seed`.
    pub fn render(&self, seed: u64, index: u64) -> PairImages {
        let cfg = &self.config;
        let mut r = rng(seed, index);
        let (fw, fh) = (cfg.frame.0 as f32, cfg.frame.1 as f32);
        let scene = Scene::random(self.photos, cfg.frame.0, cfg.frame.1, (0.2, 0.3), &mut r);
        let size = scene.target_size();
        let ln_s = cfg.max_scale_change.ln();
        // Frame A: the exemplar.
        let s_a = if ln_s > 0.0 {
            r.random_range(-ln_s..ln_s).exp()
        } else {
            1.0
        };
        let a_pose = pose(
            r.random_range(0.25 * fw..0.75 * fw),
            r.random_range(0.25 * fh..0.75 * fh),
            s_a,
            if cfg.max_rotation > 0.0 {
                r.random_range(-0.5 * cfg.max_rotation..0.5 * cfg.max_rotation)
            } else {
                0.0
            },
        );
        let (gain, bias, grad) = self.light(&mut r);
        let grad_angle = r.random_range(0.0f32..std::f32::consts::TAU);
        let state_a = State {
            target: a_pose,
            distractor: None,
            occluder: None,
            pan: [0.0, 0.0],
            gain,
            bias,
            gradient: grad,
            gradient_angle: grad_angle,
        };
        let frame_a = scene.render(&state_a);
        let (zx, zy, s_z) = context_window(&frame_a.rect, cfg.context);
        let template = siamfc_crop(&frame_a.image, zx, zy, s_z, cfg.template_size);

        // Frame B: the same target, changed.
        let ratio = if ln_s > 0.0 {
            r.random_range(-ln_s..ln_s).exp()
        } else {
            1.0
        };
        let mut b_pose = pose(
            r.random_range(0.25 * fw..0.75 * fw),
            r.random_range(0.25 * fh..0.75 * fh),
            s_a * ratio,
            a_pose.angle
                + if cfg.max_rotation > 0.0 {
                    r.random_range(-cfg.max_rotation..cfg.max_rotation)
                } else {
                    0.0
                },
        );
        if r.random_bool(cfg.p_blur) {
            let a = r.random_range(0.0f32..std::f32::consts::TAU);
            let l = r.random_range(3.0f32..12.0);
            b_pose.blur = [l * a.cos(), l * a.sin()];
        }
        let s_x = s_z * cfg.search_size as f32 / cfg.template_size as f32;
        let px_per_crop = s_x / cfg.search_size as f32;
        let distractor = r.random_bool(cfg.p_distractor).then(|| {
            let a = r.random_range(0.0f32..std::f32::consts::TAU);
            let d =
                r.random_range(0.9 * size * b_pose.scale..(0.45 * s_x).max(size * b_pose.scale));
            pose(
                b_pose.cx + d * a.cos(),
                b_pose.cy + d * a.sin(),
                b_pose.scale,
                b_pose.angle,
            )
        });
        let occluder = r.random_bool(cfg.p_occlusion).then(|| {
            let a = r.random_range(0.0f32..std::f32::consts::TAU);
            let d = r.random_range(0.35f32..0.7) * size * b_pose.scale;
            pose(
                b_pose.cx + d * a.cos(),
                b_pose.cy + d * a.sin(),
                b_pose.scale,
                0.0,
            )
        });
        let (gain, bias, grad) = self.light(&mut r);
        let state_b = State {
            target: b_pose,
            distractor,
            occluder,
            pan: [0.0, 0.0],
            gain,
            bias,
            gradient: grad,
            gradient_angle: grad_angle + r.random_range(-0.5f32..0.5),
        };
        let frame_b = scene.render(&state_b);
        // Displacement in a disc of radius max_shift_px (search-crop pixels).
        let rad = cfg.max_shift_px * r.random_range(0.0f32..1.0).sqrt();
        let ang = r.random_range(0.0f32..std::f32::consts::TAU);
        let shift = [rad * ang.cos(), rad * ang.sin()];
        let [bx, by, bw, bh] = frame_b.rect;
        let (tcx, tcy) = (bx + bw / 2.0, by + bh / 2.0);
        let search = siamfc_crop(
            &frame_b.image,
            tcx - shift[0] * px_per_crop,
            tcy - shift[1] * px_per_crop,
            s_x,
            cfg.search_size,
        );
        PairImages {
            template,
            search,
            shift,
            scale_ratio: ratio,
        }
    }

    /// Pair `index` of the run seeded with `seed`, normalised, with its label maps.
    pub fn pair(&self, seed: u64, index: u64) -> Pair {
        let imgs = self.render(seed, index);
        let norm = &self.config.normalization;
        let (label, weight) = self.config.label_maps(imgs.shift);
        Pair {
            template: super::super::pixels::to_chw(&imgs.template, norm),
            search: super::super::pixels::to_chw(&imgs.search, norm),
            label,
            weight,
            shift: imgs.shift,
            scale_ratio: imgs.scale_ratio,
        }
    }

    /// Pairs `indices` of the run seeded with `seed`, made on all cores.
    pub fn batch(&self, seed: u64, indices: &[u64]) -> PairBatch {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(indices.len().max(1));
        let chunk = indices.len().div_ceil(threads).max(1);
        let pairs: Vec<Pair> = std::thread::scope(|s| {
            let handles: Vec<_> = indices
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || part.iter().map(|&i| self.pair(seed, i)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut b = PairBatch {
            template: Vec::new(),
            search: Vec::new(),
            label: Vec::new(),
            weight: Vec::new(),
            shifts: Vec::new(),
            n: pairs.len(),
        };
        for p in pairs {
            b.template.extend_from_slice(&p.template);
            b.search.extend_from_slice(&p.search);
            b.label.extend_from_slice(&p.label);
            b.weight.extend_from_slice(&p.weight);
            b.shifts.push(p.shift);
        }
        b
    }
}

/// The response cell nearest to `shift` (row, col): what a perfect tracker's peak would be.
pub fn expected_peak(cfg: &PairConfig, shift: [f32; 2]) -> (usize, usize) {
    let c = (cfg.map_size as f32 - 1.0) / 2.0;
    let m = cfg.map_size as f32 - 1.0;
    let col = (shift[0] / cfg.stride as f32 + c).round().clamp(0.0, m) as usize;
    let row = (shift[1] / cfg.stride as f32 + c).round().clamp(0.0, m) as usize;
    (row, col)
}

/// Distance in search-crop pixels between the arg-max of a response map (`m × m`, row-major)
/// and the true shift: the "peak error" a training loop reports.
pub fn peak_error(cfg: &PairConfig, response: &[f32], shift: [f32; 2]) -> f32 {
    let m = cfg.map_size as usize;
    let (mut best, mut at) = (f32::NEG_INFINITY, 0);
    for (i, &v) in response.iter().enumerate().take(m * m) {
        if v > best {
            best = v;
            at = i;
        }
    }
    let [dx, dy] = cfg.cell_offset(at / m, at % m);
    ((dx - shift[0]).powi(2) + (dy - shift[1]).powi(2)).sqrt()
}
