//! The photographs, and one scene: a background, a target sprite, an optional distractor and an
//! occluder, rendered at a given state (positions, scale, rotation, blur, light).

use super::super::pixels::{
    composite, crop_square, ellipse_box, illuminate, Coverage, Mask, Placement,
};
use super::super::{data_error, Rng};
use crate::Result;
use image::imageops::{self, FilterType};
use image::Rgb32FImage;
use rand::RngExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An object in a photograph: file and box `[x, y, w, h]` in that image's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSpec {
    pub name: &'static str,
    pub image: &'static str,
    pub rect: [u32; 4],
}

/// The targets, boxes drawn by hand on scikit-image 0.26's photographs.
pub const TARGETS: &[TargetSpec] = &[
    TargetSpec {
        name: "astronaut-face",
        image: "astronaut.png",
        rect: [150, 15, 150, 175],
    },
    TargetSpec {
        name: "mission-badge",
        image: "astronaut.png",
        rect: [133, 347, 78, 78],
    },
    TargetSpec {
        name: "cat-face",
        image: "chelsea.png",
        rect: [100, 40, 290, 250],
    },
    TargetSpec {
        name: "coffee-cup",
        image: "coffee.png",
        rect: [170, 15, 245, 290],
    },
    TargetSpec {
        name: "rocket",
        image: "rocket.jpg",
        rect: [290, 120, 62, 240],
    },
    TargetSpec {
        name: "motorcycle",
        image: "motorcycle_left.png",
        rect: [95, 75, 590, 380],
    },
    TargetSpec {
        name: "headlight",
        image: "motorcycle_left.png",
        rect: [500, 112, 76, 80],
    },
];

/// Backgrounds (a target never moves over its own photograph).
pub const BACKGROUNDS: &[&str] = &[
    "brick.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "camera.png",
    "moon.png",
    "coffee.png",
    "chelsea.png",
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_right.png",
    "coins.png",
    "page.png",
];

/// Occluder textures.
pub const TEXTURES: &[&str] = &["brick.png", "grass.png", "gravel.png"];

/// The photographs, decoded once as linear `f32` RGB in [0, 1].
pub struct Photos {
    images: BTreeMap<String, Rgb32FImage>,
    pub dir: PathBuf,
}

impl Photos {
    /// Every photograph the generator uses, from a folder of scikit-image's data files.
    pub fn load(dir: &Path) -> Result<Photos> {
        let mut names: Vec<&str> = TARGETS.iter().map(|t| t.image).collect();
        names.extend_from_slice(BACKGROUNDS);
        names.extend_from_slice(TEXTURES);
        names.sort_unstable();
        names.dedup();
        let mut images = BTreeMap::new();
        for n in names {
            let p = dir.join(n);
            let img = edgeslim_runtime::input::open_image(&p).map_err(|e| {
                data_error(
                    &p,
                    format!(
                        "tracking data needs this photograph ({e}); run `edgeslim assets fetch`"
                    ),
                )
            })?;
            images.insert(n.to_string(), img.to_rgb32f());
        }
        for t in TARGETS {
            let img = &images[t.image];
            let [x, y, w, h] = t.rect;
            if x + w > img.width() || y + h > img.height() {
                return Err(data_error(
                    &dir.join(t.image),
                    format!("target '{}' box {:?} exceeds the image", t.name, t.rect),
                ));
            }
        }
        Ok(Photos {
            images,
            dir: dir.to_path_buf(),
        })
    }

    /// The photographs of the asset cache (`edgeslim assets fetch` puts them there).
    pub fn open(assets: &crate::assets::Assets) -> Result<Photos> {
        Photos::load(&assets.image(""))
    }

    pub fn get(&self, name: &str) -> &Rgb32FImage {
        // Every name the generator asks for was loaded in `load` (constant lists).
        &self.images[name]
    }
}

/// What a scene holds (fixed for a sequence or a pair).
pub struct Scene {
    pub width: u32,
    pub height: u32,
    /// Margin of background around the frame, for camera pan.
    pub pan_margin: u32,
    pub background: Rgb32FImage,
    pub background_name: String,
    pub target: Rgb32FImage,
    pub target_name: &'static str,
    pub distractor_tint: [f32; 3],
    pub distractor_scale: f32,
    pub occluder: Rgb32FImage,
    pub occluder_name: String,
}

/// An object's pose in a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub cx: f32,
    pub cy: f32,
    pub scale: f32,
    pub angle: f32,
    pub blur: [f32; 2],
}

/// Everything that changes from frame to frame.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub target: Pose,
    pub distractor: Option<Pose>,
    pub occluder: Option<Pose>,
    /// Camera offset within the pan margin.
    pub pan: [f32; 2],
    pub gain: f32,
    pub bias: f32,
    pub gradient: f32,
    pub gradient_angle: f32,
}

/// A rendered frame: the image, the target's box and how much of it is visible.
pub struct Rendered {
    pub image: Rgb32FImage,
    /// `[x, y, w, h]`, continuous pixel coordinates (may extend past the frame).
    pub rect: [f32; 4],
    /// Share of the target's area inside the frame and not occluded, in [0, 1].
    pub visible: f32,
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A random window of `img` with aspect `w:h`, covering 45–100 % of the largest such window,
/// resized to `w × h`, maybe mirrored.
fn random_view(img: &Rgb32FImage, w: u32, h: u32, rng: &mut Rng) -> Rgb32FImage {
    let aspect = w as f32 / h as f32;
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    let (mw, mh) = if iw / ih > aspect {
        (ih * aspect, ih)
    } else {
        (iw, iw / aspect)
    };
    let f = rng.random_range(0.45f32..1.0);
    let (cw, ch) = ((mw * f).max(2.0) as u32, (mh * f).max(2.0) as u32);
    let x = rng.random_range(0..=img.width().saturating_sub(cw));
    let y = rng.random_range(0..=img.height().saturating_sub(ch));
    let view = imageops::crop_imm(img, x, y, cw, ch).to_image();
    let out = imageops::resize(&view, w, h, FilterType::Triangle);
    if rng.random_bool(0.5) {
        imageops::flip_horizontal(&out)
    } else {
        out
    }
}

impl Scene {
    /// A random scene for a `width × height` frame; the target's longer side is `size_range`
    /// (a fraction of the frame's shorter side) at scale 1.
    pub fn random(
        photos: &Photos,
        width: u32,
        height: u32,
        size_range: (f32, f32),
        rng: &mut Rng,
    ) -> Scene {
        let spec = *pick(rng, TARGETS);
        let backgrounds: Vec<&str> = BACKGROUNDS
            .iter()
            .copied()
            .filter(|b| *b != spec.image)
            .collect();
        let bg_name = *pick(rng, &backgrounds);
        let pan_margin = (width.min(height) / 10).max(4);
        let background = random_view(
            photos.get(bg_name),
            width + 2 * pan_margin,
            height + 2 * pan_margin,
            rng,
        );
        // The target sprite at scale 1.
        let [x, y, w, h] = spec.rect;
        let long = rng.random_range(size_range.0..size_range.1) * width.min(height) as f32;
        let k = long / w.max(h) as f32;
        let (tw, th) = (
            ((w as f32 * k).round() as u32).max(8),
            ((h as f32 * k).round() as u32).max(8),
        );
        let patch = imageops::crop_imm(photos.get(spec.image), x, y, w, h).to_image();
        let mut target = imageops::resize(&patch, tw, th, FilterType::Triangle);
        if rng.random_bool(0.5) {
            target = imageops::flip_horizontal(&target);
        }
        let tint = [
            rng.random_range(0.75f32..1.25),
            rng.random_range(0.75f32..1.25),
            rng.random_range(0.75f32..1.25),
        ];
        let tex = *pick(rng, TEXTURES);
        let (ow, oh) = (
            ((tw as f32 * rng.random_range(0.5f32..0.9)) as u32).max(6),
            ((th as f32 * rng.random_range(0.5f32..0.9)) as u32).max(6),
        );
        let occluder = random_view(photos.get(tex), ow, oh, rng);
        Scene {
            width,
            height,
            pan_margin,
            background,
            background_name: bg_name.to_string(),
            target,
            target_name: spec.name,
            distractor_tint: tint,
            distractor_scale: rng.random_range(0.8f32..1.2),
            occluder,
            occluder_name: tex.to_string(),
        }
    }

    /// The target's half extents (frame pixels) at `pose`.
    pub fn target_half_extent(&self, pose: &Pose) -> (f32, f32) {
        ellipse_box(
            self.target.width() as f32 * pose.scale / 2.0,
            self.target.height() as f32 * pose.scale / 2.0,
            pose.angle,
        )
    }

    /// The target's box at `pose`: `[x, y, w, h]`.
    pub fn target_rect(&self, pose: &Pose) -> [f32; 4] {
        let (hx, hy) = self.target_half_extent(pose);
        [pose.cx - hx, pose.cy - hy, 2.0 * hx, 2.0 * hy]
    }

    /// The target's longer side at scale 1 (frame pixels).
    pub fn target_size(&self) -> f32 {
        self.target.width().max(self.target.height()) as f32
    }

    /// Draw the frame for `state`.
    pub fn render(&self, state: &State) -> Rendered {
        let m = self.pan_margin as f32;
        let px = (m + state.pan[0]).round().clamp(0.0, 2.0 * m) as u32;
        let py = (m + state.pan[1]).round().clamp(0.0, 2.0 * m) as u32;
        let mut image =
            imageops::crop_imm(&self.background, px, py, self.width, self.height).to_image();
        let place = |p: &Pose| Placement {
            cx: p.cx,
            cy: p.cy,
            scale: p.scale,
            angle: p.angle,
            blur: p.blur,
        };
        if let Some(d) = &state.distractor {
            let mut at = place(d);
            at.scale *= self.distractor_scale;
            composite(
                &mut image,
                &self.target,
                Mask::Ellipse,
                &at,
                self.distractor_tint,
            );
        }
        let target_cov = composite(
            &mut image,
            &self.target,
            Mask::Ellipse,
            &place(&state.target),
            [1.0; 3],
        );
        let occ_cov = match &state.occluder {
            Some(o) => composite(&mut image, &self.occluder, Mask::Rect, &place(o), [1.0; 3]),
            None => Coverage::default(),
        };
        illuminate(
            &mut image,
            state.gain,
            state.bias,
            state.gradient,
            state.gradient_angle,
        );
        let (a, b) = (
            self.target.width() as f32 * state.target.scale / 2.0,
            self.target.height() as f32 * state.target.scale / 2.0,
        );
        let area = std::f32::consts::PI * a * b;
        let visible = (target_cov.visible_under(&occ_cov) / area).clamp(0.0, 1.0);
        Rendered {
            image,
            rect: self.target_rect(&state.target),
            visible,
        }
    }
}

/// The SiamFC context window for a target box `[x, y, w, h]`: its centre and the side of the
/// square exemplar region, `sqrt((w + c(w+h)) (h + c(w+h)))` with `c = context` (SiamFC: 0.5).
pub fn context_window(rect: &[f32; 4], context: f32) -> (f32, f32, f32) {
    let [x, y, w, h] = *rect;
    let p = context * (w + h);
    (x + w / 2.0, y + h / 2.0, ((w + p) * (h + p)).sqrt())
}

/// Crop helper re-exported for pairs: the square window resized to `out`, padded with the
/// frame's mean colour.
pub fn siamfc_crop(frame: &Rgb32FImage, cx: f32, cy: f32, side: f32, out: u32) -> Rgb32FImage {
    let fill = super::super::pixels::mean_colour(frame);
    crop_square(frame, cx, cy, side, out, fill)
}
