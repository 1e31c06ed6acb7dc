//! `--source synthetic:SEED`: a generated sequence on the board, from the real photographs in
//! the asset cache (`$EDGESLIM_HOME/images`, else `~/.cache/edgeslim/images`; `edgeslim assets
//! fetch` puts them there). A target cut from one photograph (soft elliptical mask) moves over
//! another photograph with smooth random motion, bounces at the edges and a slow scale change.
//! A smaller cousin of the host's generator (`edgeslim data tracking`), which adds blur,
//! light changes, occlusion and distractors and writes OTB folders for evaluation.

use super::metrics::Rect;
use crate::error::{Result, RuntimeError};
use crate::input::SplitMix64;
use crate::io::source::{Frame, FrameSource};
use std::path::PathBuf;

/// (photograph, target box x, y, w, h) — the same hand-drawn boxes as the host generator.
const TARGETS: &[(&str, [u32; 4])] = &[
    ("chelsea.png", [100, 40, 290, 250]),
    ("coffee.png", [170, 15, 245, 290]),
    ("astronaut.png", [150, 15, 150, 175]),
    ("rocket.jpg", [290, 120, 62, 240]),
];
const BACKGROUNDS: &[&str] = &[
    "coffee.png",
    "chelsea.png",
    "astronaut.png",
    "motorcycle_left.png",
    "rocket.jpg",
];

pub fn photo_dir() -> PathBuf {
    crate::process::edgeslim_home().join("images")
}

pub struct Synthetic {
    bg: image::RgbImage,
    sprite: image::RgbImage,
    rng: SplitMix64,
    n_frames: u64,
    index: u64,
    pos: [f32; 2],
    vel: [f32; 2],
    phase: f32,
    seed: u64,
    rect: Rect,
}

impl Synthetic {
    pub fn new(seed: u64, n_frames: u64) -> Result<Synthetic> {
        let mut rng = SplitMix64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5157);
        let pick = |r: &mut SplitMix64, n: usize| (r.next_u64() % n as u64) as usize;
        let (tname, [x, y, w, h]) = TARGETS[pick(&mut rng, TARGETS.len())];
        let bgs: Vec<&str> = BACKGROUNDS
            .iter()
            .copied()
            .filter(|b| *b != tname)
            .collect();
        let bname = bgs[pick(&mut rng, bgs.len())];
        let dir = photo_dir();
        let open = |n: &str| -> Result<image::RgbImage> {
            crate::input::open_image(&dir.join(n))
                .map(|i| i.to_rgb8())
                .map_err(|e| RuntimeError::Other(format!(
                    "synthetic source needs the photographs ({e}); run `edgeslim assets fetch` on the host and copy {}",
                    dir.display()
                )))
        };
        let bg = image::imageops::resize(
            &open(bname)?,
            320,
            240,
            image::imageops::FilterType::Triangle,
        );
        let t = open(tname)?;
        if x + w > t.width() || y + h > t.height() {
            return Err(RuntimeError::Other(format!(
                "{tname}: unexpected image size"
            )));
        }
        let crop = image::imageops::crop_imm(&t, x, y, w, h).to_image();
        let side = 64.0 / w.max(h) as f32;
        let sprite = image::imageops::resize(
            &crop,
            ((w as f32 * side) as u32).max(8),
            ((h as f32 * side) as u32).max(8),
            image::imageops::FilterType::Triangle,
        );
        let a = rng.next_f32() * std::f32::consts::TAU;
        Ok(Synthetic {
            pos: [100.0 + 120.0 * rng.next_f32(), 80.0 + 80.0 * rng.next_f32()],
            vel: [2.0 * a.cos(), 2.0 * a.sin()],
            phase: rng.next_f32() * std::f32::consts::TAU,
            bg,
            sprite,
            rng,
            n_frames,
            index: 0,
            seed,
            rect: [0.0; 4],
        })
    }

    /// The target's box in the frame returned last (the first frame's box inits tracking).
    pub fn rect(&self) -> Rect {
        self.rect
    }

    fn render(&mut self) -> image::RgbImage {
        let s = 1.0 + 0.3 * (self.phase + self.index as f32 / 25.0).sin();
        let (sw, sh) = (
            self.sprite.width() as f32 * s,
            self.sprite.height() as f32 * s,
        );
        for k in 0..2 {
            self.vel[k] = 0.95 * self.vel[k] + 0.6 * (self.rng.next_f32() - 0.5);
            self.pos[k] += self.vel[k];
            let (lo, hi) = if k == 0 {
                (sw / 2.0, 320.0 - sw / 2.0)
            } else {
                (sh / 2.0, 240.0 - sh / 2.0)
            };
            if self.pos[k] < lo || self.pos[k] > hi {
                self.vel[k] = -self.vel[k];
                self.pos[k] = self.pos[k].clamp(lo, hi);
            }
        }
        let mut img = self.bg.clone();
        let (x0, y0) = (self.pos[0] - sw / 2.0, self.pos[1] - sh / 2.0);
        let (spw, sph) = (self.sprite.width() as f32, self.sprite.height() as f32);
        for py in (y0.floor().max(0.0) as u32)..((y0 + sh).ceil().min(240.0) as u32) {
            for px in (x0.floor().max(0.0) as u32)..((x0 + sw).ceil().min(320.0) as u32) {
                let u = (px as f32 + 0.5 - x0) / sw;
                let v = (py as f32 + 0.5 - y0) / sh;
                let d = ((u - 0.5) / 0.5).powi(2) + ((v - 0.5) / 0.5).powi(2);
                let alpha = ((1.0 - d) * 6.0).clamp(0.0, 1.0);
                if alpha <= 0.0 {
                    continue;
                }
                let sx = ((u * spw) as u32).min(self.sprite.width() - 1);
                let sy = ((v * sph) as u32).min(self.sprite.height() - 1);
                let s = self.sprite.get_pixel(sx, sy).0;
                let p = img.get_pixel_mut(px, py);
                for (dst, &src) in p.0.iter_mut().zip(s.iter()) {
                    *dst = (alpha * src as f32 + (1.0 - alpha) * *dst as f32).round() as u8;
                }
            }
        }
        self.rect = [x0, y0, sw, sh];
        img
    }
}

impl FrameSource for Synthetic {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.index >= self.n_frames {
            return None;
        }
        let image = self.render();
        let index = self.index;
        self.index += 1;
        Some(Ok(Frame {
            image,
            label: format!("synthetic:{}#{index}", self.seed),
            index,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "synthetic:{} ({} frames, 320×240)",
            self.seed, self.n_frames
        )
    }
}
