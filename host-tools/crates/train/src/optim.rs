//! Optimisers over candle `Var`s and a `GradStore`: SGD with momentum (optionally Nesterov),
//! AdamW with decoupled weight decay, weight-decay exclusions, a cosine learning-rate schedule
//! with linear warm-up, and global-norm gradient clipping.
//!
//! Updates are computed on detached tensors and written into the `Var`s in place, so the
//! engine's compiled graph keeps pointing at the same storage.

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use regex::Regex;

fn cerr(what: &str, e: candle_core::Error) -> Error {
    Error::Other(format!(
        "{what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

/// Which parameters get weight decay. The usual recipe: not biases, not normalisation scales
/// and shifts, not any 1-D tensor (all three are "rank ≤ 1"), nor names matching a pattern
/// (class tokens, positional embeddings).
#[derive(Debug, Clone)]
pub struct DecayPolicy {
    /// Exclude tensors of rank 0 or 1 (biases, norm γ/β, per-channel scales).
    pub exclude_rank_le1: bool,
    /// Exclude these names exactly (e.g. `GraphModule::weights()` entries whose role is a
    /// norm scale or bias, when those are not 1-D).
    pub exclude_names: Vec<String>,
    /// Exclude names any of these regular expressions matches.
    pub exclude_patterns: Vec<Regex>,
}

impl Default for DecayPolicy {
    fn default() -> Self {
        DecayPolicy {
            exclude_rank_le1: true,
            exclude_names: Vec::new(),
            exclude_patterns: Vec::new(),
        }
    }
}

impl DecayPolicy {
    /// Decay everything (plain L2 / decoupled decay on all parameters).
    pub fn all() -> Self {
        DecayPolicy {
            exclude_rank_le1: false,
            ..DecayPolicy::default()
        }
    }

    /// Also exclude names matching `pattern`.
    pub fn exclude_pattern(mut self, pattern: &str) -> Result<Self> {
        let r = Regex::new(pattern)
            .map_err(|e| Error::Invalid(format!("'{pattern}' is not a regular expression: {e}")))?;
        self.exclude_patterns.push(r);
        Ok(self)
    }

    pub fn decays(&self, name: &str, var: &Var) -> bool {
        !((self.exclude_rank_le1 && var.rank() <= 1)
            || self.exclude_names.iter().any(|n| n == name)
            || self.exclude_patterns.iter().any(|r| r.is_match(name)))
    }
}

/// A parameter with its optimiser state.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    /// SGD momentum buffer, or Adam's first moment.
    m: Option<Tensor>,
    /// Adam's second moment.
    v: Option<Tensor>,
    /// This parameter's learning rate as a multiple of the optimiser's.
    lr_scale: f64,
}

fn slots(params: Vec<(String, Var)>, policy: &DecayPolicy) -> Vec<Slot> {
    params
        .into_iter()
        .map(|(name, var)| Slot {
            decay: policy.decays(&name, &var),
            name,
            var,
            m: None,
            v: None,
            lr_scale: 1.0,
        })
        .collect()
}

/// Multiply the learning rate of the slots whose name `matches` by `factor`; returns how many.
fn scale_slots(slots: &mut [Slot], matches: &dyn Fn(&str) -> bool, factor: f64) -> usize {
    let mut n = 0;
    for s in slots.iter_mut().filter(|s| matches(&s.name)) {
        s.lr_scale *= factor;
        n += 1;
    }
    n
}

pub trait Optimizer: Send {
    /// Apply one update from `grads`; parameters without a gradient are left alone.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    fn learning_rate(&self) -> f64;
    fn set_learning_rate(&mut self, lr: f64);
    /// Names and `Var`s of the parameters, in order.
    fn params(&self) -> Vec<(String, Var)>;
    /// Multiply the learning rate of the parameters whose name `matches` by `factor` (a
    /// parameter group: ViT-Slim's masks learn faster than the weights they scale). Returns
    /// how many parameters matched.
    fn scale_learning_rate_of(&mut self, matches: &dyn Fn(&str) -> bool, factor: f64) -> usize;
}

#[derive(Debug, Clone)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// L2 penalty added to the gradient (PyTorch's SGD semantics), on decayed parameters.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

pub struct Sgd {
    cfg: SgdConfig,
    slots: Vec<Slot>,
}

impl Sgd {
    pub fn new(params: Vec<(String, Var)>, cfg: SgdConfig, policy: &DecayPolicy) -> Result<Sgd> {
        if cfg.nesterov && cfg.momentum <= 0.0 {
            return Err(Error::Invalid(
                "Nesterov momentum needs momentum > 0".into(),
            ));
        }
        Ok(Sgd {
            cfg,
            slots: slots(params, policy),
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = &self.cfg;
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let upd = || -> candle_core::Result<(Tensor, Option<Tensor>)> {
                let p = s.var.as_detached_tensor();
                let mut g = g.detach();
                if s.decay && c.weight_decay != 0.0 {
                    g = (g + p.affine(c.weight_decay, 0.0)?)?;
                }
                let mut buf = None;
                if c.momentum != 0.0 {
                    let b = match &s.m {
                        Some(b) => (b.affine(c.momentum, 0.0)? + &g)?,
                        None => g.clone(),
                    };
                    g = if c.nesterov {
                        (g + b.affine(c.momentum, 0.0)?)?
                    } else {
                        b.clone()
                    };
                    buf = Some(b);
                }
                Ok(((p - g.affine(c.lr * s.lr_scale, 0.0)?)?, buf))
            };
            let (new, buf) = upd().map_err(|e| cerr(&format!("SGD step on '{}'", s.name), e))?;
            s.var
                .set(&new)
                .map_err(|e| cerr(&format!("SGD step on '{}'", s.name), e))?;
            s.m = buf;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn params(&self) -> Vec<(String, Var)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.var.clone()))
            .collect()
    }

    fn scale_learning_rate_of(&mut self, matches: &dyn Fn(&str) -> bool, factor: f64) -> usize {
        scale_slots(&mut self.slots, matches, factor)
    }
}

#[derive(Debug, Clone)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (Loshchilov & Hutter): p ← p − lr·wd·p, on decayed parameters.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    t: i32,
}

impl AdamW {
    pub fn new(
        params: Vec<(String, Var)>,
        cfg: AdamWConfig,
        policy: &DecayPolicy,
    ) -> Result<AdamW> {
        Ok(AdamW {
            cfg,
            slots: slots(params, policy),
            t: 0,
        })
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t);
        let bc2 = 1.0 - c.beta2.powi(self.t);
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let upd = || -> candle_core::Result<(Tensor, Tensor, Tensor)> {
                let p = s.var.as_detached_tensor();
                let g = g.detach();
                let m = match &s.m {
                    Some(m) => (m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?,
                    None => g.affine(1.0 - c.beta1, 0.0)?,
                };
                let g2 = g.sqr()?;
                let v = match &s.v {
                    Some(v) => (v.affine(c.beta2, 0.0)? + g2.affine(1.0 - c.beta2, 0.0)?)?,
                    None => g2.affine(1.0 - c.beta2, 0.0)?,
                };
                let denom = (v.affine(1.0 / bc2, 0.0)?.sqrt()? + c.eps)?;
                let lr = c.lr * s.lr_scale;
                let step = (m.affine(lr / bc1, 0.0)? / denom)?;
                let p = if s.decay && c.weight_decay != 0.0 {
                    p.affine(1.0 - lr * c.weight_decay, 0.0)?
                } else {
                    p
                };
                Ok(((p - step)?, m, v))
            };
            let (new, m, v) = upd().map_err(|e| cerr(&format!("AdamW step on '{}'", s.name), e))?;
            s.var
                .set(&new)
                .map_err(|e| cerr(&format!("AdamW step on '{}'", s.name), e))?;
            s.m = Some(m);
            s.v = Some(v);
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn params(&self) -> Vec<(String, Var)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.var.clone()))
            .collect()
    }

    fn scale_learning_rate_of(&mut self, matches: &dyn Fn(&str) -> bool, factor: f64) -> usize {
        scale_slots(&mut self.slots, matches, factor)
    }
}

/// Cosine decay from `base_lr` to `min_lr` over `total_steps`, after a linear warm-up of
/// `warmup_steps` from near zero.
#[derive(Debug, Clone)]
pub struct CosineSchedule {
    pub base_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl CosineSchedule {
    /// Learning rate for step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.min_lr
            + 0.5 * (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Scale the gradients of `params` so their global L2 norm is at most `max_norm`; returns
/// the norm before clipping (report it: a NaN or a spike says the step went wrong).
pub fn clip_grad_norm(
    grads: &mut GradStore,
    params: &[(String, Var)],
    max_norm: f64,
) -> Result<f64> {
    let mut total = 0.0;
    for (name, v) in params {
        if let Some(g) = grads.get(v.as_tensor()) {
            let s = g
                .sqr()
                .and_then(|s| s.sum_all())
                .and_then(|s| s.to_dtype(candle_core::DType::F64))
                .and_then(|s| s.to_scalar::<f64>())
                .map_err(|e| cerr(&format!("gradient norm of '{name}'"), e))?;
            total += s;
        }
    }
    let norm = total.sqrt();
    if norm.is_finite() && norm > max_norm && max_norm > 0.0 {
        let scale = max_norm / (norm + 1e-6);
        for (name, v) in params {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = g
                    .affine(scale, 0.0)
                    .map_err(|e| cerr(&format!("clipping '{name}'"), e))?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn quadratic_grads(p: &Var) -> GradStore {
        // L = Σ (p − 3)²: gradient 2(p − 3), minimum at 3.
        let l = (p.as_tensor() - 3.0)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        l.backward().unwrap()
    }

    #[test]
    fn sgd_momentum_and_adamw_minimise_a_quadratic() {
        for opt_kind in ["sgd", "nesterov", "adamw"] {
            let p = Var::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
            let params = vec![("w".to_string(), p.clone())];
            let mut opt: Box<dyn Optimizer> = match opt_kind {
                "sgd" => Box::new(
                    Sgd::new(
                        params,
                        SgdConfig {
                            lr: 0.05,
                            ..Default::default()
                        },
                        &DecayPolicy::all(),
                    )
                    .unwrap(),
                ),
                "nesterov" => Box::new(
                    Sgd::new(
                        params,
                        SgdConfig {
                            lr: 0.05,
                            nesterov: true,
                            ..Default::default()
                        },
                        &DecayPolicy::all(),
                    )
                    .unwrap(),
                ),
                _ => Box::new(
                    AdamW::new(
                        params,
                        AdamWConfig {
                            lr: 0.1,
                            weight_decay: 0.0,
                            ..Default::default()
                        },
                        &DecayPolicy::all(),
                    )
                    .unwrap(),
                ),
            };
            for _ in 0..300 {
                let g = quadratic_grads(&p);
                opt.step(&g).unwrap();
            }
            let v = p
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(
                v.iter().all(|x| (x - 3.0).abs() < 1e-2),
                "{opt_kind}: {v:?}"
            );
        }
    }

    #[test]
    fn adamw_first_step_matches_the_formula() {
        // One step from p=1 with gradient g: m̂ = g, v̂ = g², update = lr·g/(|g|+eps) plus the
        // decoupled decay lr·wd·p.
        let p = Var::new(&[1f64, -2.0], &Device::Cpu).unwrap();
        let l = (p.as_tensor() * 0.5).unwrap().sum_all().unwrap(); // g = 0.5
        let g = l.backward().unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.2,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), p.clone())], cfg, &DecayPolicy::all()).unwrap();
        opt.step(&g).unwrap();
        let v = p.as_tensor().to_vec1::<f64>().unwrap();
        let expect = |p0: f64| p0 * (1.0 - 0.1 * 0.2) - 0.1 * 0.5 / (0.5 + 1e-8);
        assert!(
            (v[0] - expect(1.0)).abs() < 1e-9 && (v[1] - expect(-2.0)).abs() < 1e-9,
            "{v:?}"
        );
    }

    #[test]
    fn a_parameter_group_steps_at_its_own_learning_rate() {
        // Two parameters, the same gradient 0.5: the scaled one (masks) moves 10× as far on
        // the first step (no decay), under AdamW and SGD.
        for adam in [true, false] {
            let w = Var::new(&[1f64], &Device::Cpu).unwrap();
            let m = Var::new(&[1f64], &Device::Cpu).unwrap();
            let l = ((w.as_tensor() + m.as_tensor()).unwrap() * 0.5)
                .unwrap()
                .sum_all()
                .unwrap();
            let g = l.backward().unwrap();
            let params = vec![
                ("w".to_string(), w.clone()),
                ("vitslim.m".into(), m.clone()),
            ];
            let mut opt: Box<dyn Optimizer> = if adam {
                let cfg = AdamWConfig {
                    lr: 0.01,
                    weight_decay: 0.0,
                    ..Default::default()
                };
                Box::new(AdamW::new(params, cfg, &DecayPolicy::all()).unwrap())
            } else {
                let cfg = SgdConfig {
                    lr: 0.01,
                    momentum: 0.0,
                    ..Default::default()
                };
                Box::new(Sgd::new(params, cfg, &DecayPolicy::all()).unwrap())
            };
            assert_eq!(
                opt.scale_learning_rate_of(&|n| n.starts_with("vitslim."), 10.0),
                1
            );
            opt.step(&g).unwrap();
            let dw = 1.0 - w.as_tensor().to_vec1::<f64>().unwrap()[0];
            let dm = 1.0 - m.as_tensor().to_vec1::<f64>().unwrap()[0];
            assert!(
                dw > 0.0 && (dm / dw - 10.0).abs() < 1e-6,
                "adam {adam}: {dw} {dm}"
            );
        }
    }

    #[test]
    fn weight_decay_skips_biases_norms_and_patterns() {
        let w = Var::zeros((3, 3), DType::F32, &Device::Cpu).unwrap();
        let b = Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let pol = DecayPolicy::default()
            .exclude_pattern("cls_token|pos_embed")
            .unwrap();
        assert!(pol.decays("fc.weight", &w));
        assert!(!pol.decays("fc.bias", &b));
        assert!(!pol.decays("vit.cls_token", &w));
        // With a zero gradient, AdamW only applies the decay: to `w`, not to the bias.
        let w = Var::ones((3, 3), DType::F32, &Device::Cpu).unwrap();
        let b = Var::ones(3, DType::F32, &Device::Cpu).unwrap();
        // Multiply by a zero tensor, not the scalar 0: candle prunes `x * 0.0` from the
        // backward graph, and AdamW (like PyTorch) skips parameters without a gradient.
        let zw = Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap();
        let zb = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let l = ((w.as_tensor() * &zw).unwrap().sum_all().unwrap()
            + (b.as_tensor() * &zb).unwrap().sum_all().unwrap())
        .unwrap();
        let g = l.backward().unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let params = vec![
            ("fc.weight".to_string(), w.clone()),
            ("fc.bias".to_string(), b.clone()),
        ];
        AdamW::new(params, cfg, &pol).unwrap().step(&g).unwrap();
        let wv = w
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let bv = b.as_tensor().to_vec1::<f32>().unwrap();
        assert!(wv.iter().all(|x| (x - 0.95).abs() < 1e-6), "{wv:?}");
        assert!(bv.iter().all(|x| (x - 1.0).abs() < 1e-6), "{bv:?}");
    }

    #[test]
    fn cosine_schedule_warms_up_then_decays() {
        let s = CosineSchedule {
            base_lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-12);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
        assert!((s.lr(500) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let a = Var::new(&[3f32, 0.0], &Device::Cpu).unwrap();
        let b = Var::new(&[0f32, 4.0], &Device::Cpu).unwrap();
        // Gradients equal the values: L = ½Σa² + ½Σb².
        let l = ((a.as_tensor().sqr().unwrap().sum_all().unwrap()
            + b.as_tensor().sqr().unwrap().sum_all().unwrap())
        .unwrap()
            * 0.5)
            .unwrap();
        let mut g = l.backward().unwrap();
        let params = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        let n = clip_grad_norm(&mut g, &params, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        let after = clip_grad_norm(&mut g, &params, 1.0).unwrap();
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }
}
