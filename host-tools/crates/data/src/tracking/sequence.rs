//! Whole tracking sequences, frame by frame, from a seed.
//!
//! Motion: a damped random walk of the velocity (smooth motion) with bounces at the frame's
//! edges; abrupt kicks (fast motion, with motion blur along the velocity) and rare jumps; a
//! planned exit-and-return through the nearest edge (out of view); a log-scale random walk and
//! zoom bursts (scale change); an angle random walk with quick turns (in-plane rotation); a drifting global gain
//! with sudden switches and a light gradient (illumination); a texture patch sweeping across
//! the target (partial occlusion); a tinted copy of the target wandering around (distractor);
//! a slow camera pan. Which of these happened is recorded as OTB-style attributes.

use super::super::{rng, Rng};
use super::scene::{Photos, Pose, Scene, State};
use crate::Result;
use rand::RngExt;
use rand_distr::StandardNormal;
use std::collections::BTreeSet;

/// Knobs of the generator; [`SequenceConfig::default`] turns everything on.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceConfig {
    pub width: u32,
    pub height: u32,
    pub n_frames: usize,
    /// Target's longer side at scale 1, as a fraction of the frame's shorter side.
    pub target_size: (f32, f32),
    pub motion: bool,
    pub abrupt: bool,
    pub scale_change: bool,
    pub rotation: bool,
    pub blur: bool,
    pub illumination: bool,
    pub occlusion: bool,
    pub distractor: bool,
    pub out_of_view: bool,
    pub camera_pan: bool,
}

impl SequenceConfig {
    pub fn new(width: u32, height: u32, n_frames: usize) -> SequenceConfig {
        SequenceConfig {
            width,
            height,
            n_frames,
            target_size: (0.2, 0.32),
            motion: true,
            abrupt: true,
            scale_change: true,
            rotation: true,
            blur: true,
            illumination: true,
            occlusion: true,
            distractor: true,
            out_of_view: true,
            camera_pan: true,
        }
    }

    /// Smooth motion only: the target keeps its appearance (tests compare pixels).
    pub fn plain(width: u32, height: u32, n_frames: usize) -> SequenceConfig {
        SequenceConfig {
            abrupt: false,
            scale_change: false,
            rotation: false,
            blur: false,
            illumination: false,
            occlusion: false,
            distractor: false,
            out_of_view: false,
            camera_pan: false,
            ..SequenceConfig::new(width, height, n_frames)
        }
    }

    fn check(&self) -> Result<()> {
        if self.width < 64 || self.height < 64 || self.width > 4096 || self.height > 4096 {
            return Err(crate::Error::Invalid(format!(
                "sequence frame size {}x{}: each side must be 64..=4096 pixels",
                self.width, self.height
            )));
        }
        if self.n_frames == 0 {
            return Err(crate::Error::Invalid(
                "a sequence needs at least one frame".into(),
            ));
        }
        Ok(())
    }
}

/// One generated frame.
pub struct Frame {
    /// 0-based.
    pub index: usize,
    pub image: image::RgbImage,
    /// Ground truth `[x, y, w, h]`, continuous pixel coordinates, 0-based (may extend past the
    /// frame, or lie wholly outside it while the target is out of view).
    pub rect: [f32; 4],
    /// Share of the target's area inside the frame and not occluded.
    pub visible: f32,
}

/// An object's motion state.
#[derive(Debug, Clone, Copy)]
struct Body {
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
    log_s: f32,
    v_log_s: f32,
    angle: f32,
    v_angle: f32,
}

/// Planned events (frame ranges).
#[derive(Debug, Clone, Default)]
struct Plan {
    leave: Option<(usize, usize, [f32; 2])>,
    occlusion: Option<(usize, usize, [f32; 2], f32)>,
    distractor: bool,
}

/// A generated sequence: an iterator of [`Frame`]s.
pub struct Sequence<'a> {
    cfg: SequenceConfig,
    scene: Scene,
    rng: Rng,
    t: usize,
    target: Body,
    distractor: Body,
    plan: Plan,
    pan: [f32; 2],
    gain: f32,
    gradient: f32,
    gradient_angle: f32,
    attributes: BTreeSet<&'static str>,
    _photos: std::marker::PhantomData<&'a Photos>,
}

fn normal(rng: &mut Rng) -> f32 {
    rng.sample::<f32, _>(StandardNormal)
}

impl<'a> Sequence<'a> {
    pub fn new(photos: &'a Photos, seed: u64, cfg: SequenceConfig) -> Result<Sequence<'a>> {
        cfg.check()?;
        let mut r = rng(seed, 0x5345_5155);
        let scene = Scene::random(photos, cfg.width, cfg.height, cfg.target_size, &mut r);
        let (w, h) = (cfg.width as f32, cfg.height as f32);
        let size = scene.target_size();
        let start = |r: &mut Rng| Body {
            x: r.random_range(0.3 * w..0.7 * w),
            y: r.random_range(0.3 * h..0.7 * h),
            vx: r.random_range(-2.0f32..2.0),
            vy: r.random_range(-2.0f32..2.0),
            log_s: 0.0,
            v_log_s: 0.0,
            angle: 0.0,
            v_angle: 0.0,
        };
        let target = start(&mut r);
        let mut distractor = start(&mut r);
        // Keep the distractor away from the target at the start (the first frame initialises
        // trackers).
        if (distractor.x - target.x).abs() < size {
            distractor.x = if target.x < w / 2.0 {
                (target.x + 1.5 * size).min(w - size / 2.0)
            } else {
                (target.x - 1.5 * size).max(size / 2.0)
            };
        }
        let n = cfg.n_frames;
        let mut plan = Plan::default();
        if cfg.out_of_view && n >= 60 && r.random_bool(0.5) {
            let start = r.random_range(n * 3 / 10..n * 6 / 10);
            let dur = r.random_range(16..32usize).min(n - start);
            let a = r.random_range(0.0f32..std::f32::consts::TAU);
            plan.leave = Some((start, start + dur, [a.cos(), a.sin()]));
        }
        if cfg.occlusion && n >= 30 && r.random_bool(0.6) {
            let dur = r.random_range(20..40usize).min(n / 2);
            let start = r.random_range(n / 6..n - dur);
            let a = r.random_range(0.0f32..std::f32::consts::TAU);
            let offset = r.random_range(-0.35f32..0.35);
            plan.occlusion = Some((start, start + dur, [a.cos(), a.sin()], offset));
        }
        plan.distractor = cfg.distractor && r.random_bool(0.5);
        let gradient = if cfg.illumination {
            r.random_range(0.0f32..0.35)
        } else {
            0.0
        };
        let gradient_angle = r.random_range(0.0f32..std::f32::consts::TAU);
        Ok(Sequence {
            cfg,
            scene,
            rng: r,
            t: 0,
            target,
            distractor,
            plan,
            pan: [0.0, 0.0],
            gain: 1.0,
            gradient,
            gradient_angle,
            attributes: BTreeSet::new(),
            _photos: std::marker::PhantomData,
        })
    }

    /// The target's and background's names (provenance).
    pub fn describe(&self) -> (String, String, String) {
        (
            self.scene.target_name.to_string(),
            self.scene.background_name.clone(),
            self.scene.occluder_name.clone(),
        )
    }

    /// OTB-style attributes seen so far: IV illumination variation, SV scale variation, OCC
    /// occlusion, MB motion blur, FM fast motion, IPR in-plane rotation, OV out of view, BC
    /// background clutter (a distractor).
    pub fn attributes(&self) -> Vec<&'static str> {
        self.attributes.iter().copied().collect()
    }

    fn in_leave(&self) -> Option<(bool, [f32; 2])> {
        let (s, e, d) = self.plan.leave?;
        (self.t >= s && self.t < e).then_some((self.t < (s + e) / 2, d))
    }

    fn step_body(&mut self, distractor: bool) {
        let cfg = &self.cfg;
        let (w, h) = (cfg.width as f32, cfg.height as f32);
        let size = self.scene.target_size();
        let leave = if distractor { None } else { self.in_leave() };
        let mut b = if distractor {
            self.distractor
        } else {
            self.target
        };
        let r = &mut self.rng;
        if cfg.motion {
            b.vx = 0.97 * b.vx + 0.5 * normal(r);
            b.vy = 0.97 * b.vy + 0.5 * normal(r);
            let speed = (b.vx * b.vx + b.vy * b.vy).sqrt();
            if speed > 5.0 && !(cfg.abrupt && speed > 7.5) {
                b.vx *= 5.0 / speed;
                b.vy *= 5.0 / speed;
            }
            if cfg.abrupt && !distractor && leave.is_none() {
                if r.random_bool(0.02) {
                    let a = r.random_range(0.0f32..std::f32::consts::TAU);
                    let s = r.random_range(9.0f32..16.0);
                    b.vx = s * a.cos();
                    b.vy = s * a.sin();
                    self.attributes.insert("FM");
                } else if r.random_bool(0.004) {
                    b.x += r.random_range(-0.8f32..0.8) * size;
                    b.y += r.random_range(-0.8f32..0.8) * size;
                    self.attributes.insert("FM");
                }
                // Kicks decay back towards smooth motion.
                let speed = (b.vx * b.vx + b.vy * b.vy).sqrt();
                if speed > 5.0 {
                    b.vx *= 0.85;
                    b.vy *= 0.85;
                }
            }
        }
        if let Some((outward, d)) = leave {
            let s = 0.9 * size / 8.0 + 4.0;
            let sign = if outward { 1.0 } else { -1.0 };
            b.vx = sign * s * d[0];
            b.vy = sign * s * d[1];
        }
        b.x += b.vx;
        b.y += b.vy;
        if leave.is_none() {
            // Bounce at the edges (the target's centre stays a margin inside the frame), or
            // come back in from outside after an exit.
            let (mx, my) = (0.35 * size, 0.35 * size);
            if b.x < mx {
                b.vx = b.vx.abs().max(1.0);
                b.x = b.x.max(mx - 8.0);
            } else if b.x > w - mx {
                b.vx = -b.vx.abs().max(1.0);
                b.x = b.x.min(w - mx + 8.0);
            }
            if b.y < my {
                b.vy = b.vy.abs().max(1.0);
                b.y = b.y.max(my - 8.0);
            } else if b.y > h - my {
                b.vy = -b.vy.abs().max(1.0);
                b.y = b.y.min(h - my + 8.0);
            }
        }
        if cfg.scale_change {
            if r.random_bool(0.01) {
                b.v_log_s = r.random_range(-0.04f32..0.04);
            }
            b.v_log_s *= 0.95;
            b.log_s = (b.log_s + b.v_log_s + 0.012 * normal(r) - 0.01 * b.log_s)
                .clamp(0.6f32.ln(), 1.6f32.ln());
        }
        if cfg.rotation {
            // Slow wobble, and now and then a quick turn.
            if r.random_bool(0.01) {
                b.v_angle = r.random_range(-0.035f32..0.035);
            }
            b.v_angle *= 0.95;
            b.angle = (0.98 * b.angle + b.v_angle + 0.015 * normal(r)).clamp(-0.45, 0.45);
        }
        if distractor {
            self.distractor = b;
        } else {
            self.target = b;
        }
    }

    fn pose(&self, b: &Body) -> Pose {
        let blur = if self.cfg.blur {
            [0.8 * b.vx, 0.8 * b.vy]
        } else {
            [0.0, 0.0]
        };
        Pose {
            cx: b.x,
            cy: b.y,
            scale: b.log_s.exp(),
            angle: b.angle,
            blur,
        }
    }

    fn state(&mut self) -> State {
        let target = self.pose(&self.target);
        let distractor = self.plan.distractor.then(|| self.pose(&self.distractor));
        let size = self.scene.target_size() * target.scale;
        let occluder = self.plan.occlusion.and_then(|(s, e, d, off)| {
            (self.t >= s && self.t < e).then(|| {
                let f = (self.t - s) as f32 / (e - s).max(1) as f32 - 0.5;
                let sweep = 1.6 * size;
                Pose {
                    cx: target.cx + d[0] * f * sweep - d[1] * off * size,
                    cy: target.cy + d[1] * f * sweep + d[0] * off * size,
                    scale: target.scale,
                    angle: 0.0,
                    blur: [0.0, 0.0],
                }
            })
        });
        State {
            target,
            distractor,
            occluder,
            pan: self.pan,
            gain: self.gain,
            bias: 0.0,
            gradient: self.gradient,
            gradient_angle: self.gradient_angle,
        }
    }

    fn step_world(&mut self) {
        let r = &mut self.rng;
        if self.cfg.camera_pan {
            let m = self.scene.pan_margin as f32;
            self.pan[0] = (self.pan[0] + 0.4 * normal(r)).clamp(-m, m);
            self.pan[1] = (self.pan[1] + 0.4 * normal(r)).clamp(-m, m);
        }
        if self.cfg.illumination {
            self.gain = (self.gain + 0.015 * normal(r) - 0.02 * (self.gain - 1.0)).clamp(0.5, 1.5);
            if r.random_bool(0.01) {
                let jump = r.random_range(0.2f32..0.45);
                self.gain = if self.gain > 1.0 {
                    self.gain - jump
                } else {
                    self.gain + jump
                }
                .clamp(0.5, 1.5);
                self.attributes.insert("IV");
            }
            self.gradient_angle += 0.01 * normal(r);
        }
    }
}

impl Iterator for Sequence<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.t >= self.cfg.n_frames {
            return None;
        }
        if self.t > 0 {
            self.step_body(false);
            if self.plan.distractor {
                self.step_body(true);
            }
            self.step_world();
        }
        let state = self.state();
        let out = self.scene.render(&state);
        // Attributes from what this frame shows.
        let speed = (self.target.vx.powi(2) + self.target.vy.powi(2)).sqrt();
        if self.cfg.blur && speed > 4.0 {
            self.attributes.insert("MB");
        }
        if (state.target.scale - 1.0).abs() > 0.3 {
            self.attributes.insert("SV");
        }
        if state.target.angle.abs() > 0.2 {
            self.attributes.insert("IPR");
        }
        if state.occluder.is_some() && out.visible < 0.9 {
            self.attributes.insert("OCC");
        }
        if self.in_leave().is_some() && out.visible < 0.5 {
            self.attributes.insert("OV");
        }
        if state.distractor.is_some() {
            self.attributes.insert("BC");
        }
        if (self.gain - 1.0).abs() > 0.25 || self.gradient > 0.2 {
            self.attributes.insert("IV");
        }
        let frame = Frame {
            index: self.t,
            image: super::super::pixels::to_rgb8(&out.image),
            rect: out.rect,
            visible: out.visible,
        };
        self.t += 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.cfg.n_frames - self.t;
        (left, Some(left))
    }
}
