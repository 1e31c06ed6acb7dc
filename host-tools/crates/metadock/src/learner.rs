//! The inner loop and the meta-gradients, on the training engine.
//!
//! The engine's weights are candle `Var`s inside a compiled graph, so the inner loop adapts
//! them in place (θ ← θ − α∇L) and the learner restores the meta-weights after each task. The
//! engine differentiates once; the second-order terms of MAML and iMAML are Hessian-vector
//! products of the support loss, computed as central differences of gradients,
//! Hv ≈ (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, which needs only first derivatives and is exact to
//! O(ε²):
//!
//! - **MAML**: the query gradient at the adapted weights is carried back through every inner
//!   step, g ← (I − αH_j) g, with H_j the support loss's Hessian at step j's weights (and its
//!   mask).
//! - **First-order MAML**: the query gradient at the adapted weights.
//! - **iMAML**: the inner loop minimises the support loss + λ/2‖φ − θ‖²; the meta-gradient
//!   solves (I + H/λ) g = ∇L_query(φ) by conjugate gradient, H at the adapted φ.
//!
//! With MetaDOCK every inner step is a weight step under the hard mask, then a gate step with
//! the weights frozen (gates.rs). The gates' meta-gradient is first order in every algorithm:
//! the query loss + the budget term at the adapted gates.
//!
//! Batch norm: the inner loop runs in training mode (support-batch statistics, as MAML). The
//! query is then run in evaluation mode with the statistics of the support set at the adapted
//! weights, exactly what the exported task model computes; the meta-gradient treats those
//! statistics as constants.

use crate::gates::Gates;
use crate::nets::{mask_input, NetConfig, INPUT, LOGITS};
use crate::params::{self, axpy, cerr, dot, norm, snapshot};
use crate::{Error, Result};
use edgeslim_train::engine::candle_core::{DType, Device, Tensor, Var};
use edgeslim_train::engine::loss::cross_entropy;
use edgeslim_train::engine::{GraphModule, Mode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Maml,
    Fomaml,
    Imaml,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Maml => "maml",
            Algo::Fomaml => "fomaml",
            Algo::Imaml => "imaml",
        }
    }
}

/// MetaDOCK's gate step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// Wanted share of active kernels.
    pub target_active: f64,
    /// Step size of the inner gate steps.
    pub lr: f64,
    /// w_b at full strength (ramped from 0 during meta-training).
    pub budget_weight: f64,
    /// Weight of ‖ζ‖₁.
    pub l1: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            target_active: 0.25,
            lr: 50.0,
            budget_weight: 50.0,
            l1: 1e-6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnerConfig {
    pub algo: Algo,
    /// Inner SGD step size α.
    pub inner_lr: f64,
    /// Inner steps per task during meta-training.
    pub inner_steps: usize,
    /// iMAML's proximal λ.
    pub lambda: f64,
    /// iMAML's conjugate-gradient iterations.
    pub cg_steps: usize,
    /// MetaDOCK's gates (None: a dense network).
    pub gates: Option<GateConfig>,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            algo: Algo::Fomaml,
            inner_lr: 0.1,
            inner_steps: 5,
            lambda: 0.5,
            cg_steps: 5,
            gates: None,
        }
    }
}

/// One task's data as tensors of the learner's float type.
pub struct Task {
    pub support_x: Tensor,
    pub support_y: Tensor,
    pub query_x: Tensor,
    pub query_y: Tensor,
    pub query_labels: Vec<usize>,
}

impl Task {
    /// From `[n, C, s, s]` pixel values and labels.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        support: (Vec<f32>, Vec<usize>),
        query: (Vec<f32>, Vec<usize>),
        channels: usize,
        side: usize,
        dtype: DType,
    ) -> Result<Task> {
        let x = |v: Vec<f32>, n: usize| {
            Tensor::from_vec(v, (n, channels, side, side), &Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(|e| cerr("task images", e))
        };
        let y = |l: &[usize]| {
            let v: Vec<u32> = l.iter().map(|&l| l as u32).collect();
            Tensor::from_vec(v, l.len(), &Device::Cpu).map_err(|e| cerr("task labels", e))
        };
        Ok(Task {
            support_x: x(support.0, support.1.len())?,
            support_y: y(&support.1)?,
            query_x: x(query.0, query.1.len())?,
            query_y: y(&query.1)?,
            query_labels: query.1,
        })
    }
}

/// What one task contributed to a meta-step.
pub struct MetaGradient {
    pub weights: Vec<Tensor>,
    /// The gates' (first-order) meta-gradient, with MetaDOCK.
    pub gates: Option<Vec<Tensor>>,
    pub query_loss: f64,
    pub query_accuracy: f64,
}

/// A task after adaptation, before the meta-weights are restored.
pub struct Adapted {
    pub query_accuracy: f64,
    /// Active kernels per block (all of them without gates).
    pub active: Vec<usize>,
    /// The hard masks, `[out·in]` per block.
    pub masks: Vec<Vec<f32>>,
}

/// A Conv-4 compiled for meta-learning, with its gates.
pub struct Learner {
    pub module: GraphModule,
    pub net: NetConfig,
    pub cfg: LearnerConfig,
    pub gates: Option<Gates>,
    /// The adapted weights (every trainable weight: convolutions, batch-norm scales, head).
    pub names: Vec<String>,
    pub vars: Vec<Var>,
}

/// The weights, masks and inputs of one inner step (what MAML's backward pass revisits).
struct Step {
    weights: Vec<Tensor>,
    masks: Vec<Tensor>,
}

impl Learner {
    pub fn new(
        module: GraphModule,
        net: NetConfig,
        cfg: LearnerConfig,
        gates: Option<Gates>,
    ) -> Result<Learner> {
        if cfg.gates.is_some() != gates.is_some() {
            return Err(Error::Invalid(
                "MetaDOCK needs both its gate settings and its gates".into(),
            ));
        }
        if cfg.inner_lr.is_nan() || cfg.inner_lr <= 0.0 || cfg.inner_steps == 0 {
            return Err(Error::Invalid(format!(
                "the inner loop needs a positive step size and ≥ 1 step (α {}, {} steps)",
                cfg.inner_lr, cfg.inner_steps
            )));
        }
        if cfg.algo == Algo::Imaml && (cfg.lambda.is_nan() || cfg.lambda <= 0.0) {
            return Err(Error::Invalid(format!(
                "iMAML needs λ > 0 (λ {})",
                cfg.lambda
            )));
        }
        let (names, vars) = module.require_trainable()?.into_iter().unzip();
        Ok(Learner {
            module,
            net,
            cfg,
            gates,
            names,
            vars,
        })
    }

    fn dtype(&self) -> DType {
        self.module.dtype()
    }

    /// The masks of the current gates: hard ones (no gradient), straight-through ones, or
    /// all ones without gates.
    fn masks(&self, straight_through: bool) -> Result<Vec<Tensor>> {
        match &self.gates {
            None => Gates::ones(&self.net, self.dtype()),
            Some(g) if straight_through => g.straight_through(),
            Some(g) => g.hard(),
        }
    }

    /// Logits of `x` under `masks`.
    pub fn logits(&self, x: &Tensor, masks: &[Tensor], mode: Mode) -> Result<Tensor> {
        let names: Vec<String> = (0..masks.len()).map(mask_input).collect();
        let mut inputs: Vec<(&str, Tensor)> = vec![(INPUT, x.clone())];
        inputs.extend(names.iter().map(String::as_str).zip(masks.iter().cloned()));
        let out = self.module.forward(&inputs, mode, &[])?;
        out.get(LOGITS)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("the network has no output '{LOGITS}'")))
    }

    /// The support loss's gradient at the current weights under `masks` (training mode).
    fn support_gradient(&self, task: &Task, masks: &[Tensor]) -> Result<(f64, Vec<Tensor>)> {
        let loss = cross_entropy(
            &self.logits(&task.support_x, masks, Mode::Train)?,
            &task.support_y,
        )?;
        let grads = self.module.backward(&loss)?;
        Ok((scalar(&loss)?, params::gradients(&grads, &self.vars)?))
    }

    /// H·v of the support loss at `at` under `masks` (central difference of gradients); the
    /// weights are left at `at`.
    fn hvp(
        &self,
        task: &Task,
        at: &[Tensor],
        masks: &[Tensor],
        v: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let vn = norm(v)?;
        if vn == 0.0 {
            return params::scale(0.0, v);
        }
        let rel = if self.dtype() == DType::F64 {
            1e-6
        } else {
            1e-3
        };
        let eps = rel * (1.0 + norm(at)?) / vn;
        params::restore(&self.vars, &axpy(eps, v, at)?)?;
        let (_, gp) = self.support_gradient(task, masks)?;
        params::restore(&self.vars, &axpy(-eps, v, at)?)?;
        let (_, gm) = self.support_gradient(task, masks)?;
        params::restore(&self.vars, at)?;
        params::scale(0.5 / eps, &axpy(-1.0, &gm, &gp)?)
    }

    /// The inner loop on the task's support set, in place: `steps` weight steps (each under
    /// the hard mask, then a gate step with MetaDOCK at budget weight `w_b`). With
    /// `record`, the weights and masks before every weight step.
    fn inner_loop(&self, task: &Task, steps: usize, w_b: f64, record: bool) -> Result<Vec<Step>> {
        let anchor = match self.cfg.algo {
            Algo::Imaml => Some(snapshot(&self.vars)?),
            _ => None,
        };
        let mut trail = Vec::new();
        for _ in 0..steps {
            let masks = self.masks(false)?;
            let (_, mut g) = self.support_gradient(task, &masks)?;
            let now = snapshot(&self.vars)?;
            if let Some(theta) = &anchor {
                // ∇ of λ/2‖φ − θ‖² is λ(φ − θ).
                g = axpy(self.cfg.lambda, &axpy(-1.0, theta, &now)?, &g)?;
            }
            params::restore(&self.vars, &axpy(-self.cfg.inner_lr, &g, &now)?)?;
            if record {
                trail.push(Step {
                    weights: now,
                    masks,
                });
            }
            if let (Some(gates), Some(gc)) = (&self.gates, &self.cfg.gates) {
                self.gate_step(task, gates, gc, w_b)?;
            }
        }
        Ok(trail)
    }

    /// One gate step on CE + w_b(active − target)² + l1‖ζ‖₁ with the weights as they are.
    fn gate_step(&self, task: &Task, gates: &Gates, gc: &GateConfig, w_b: f64) -> Result<()> {
        let st = gates.straight_through()?;
        let ce = cross_entropy(
            &self.logits(&task.support_x, &st, Mode::Train)?,
            &task.support_y,
        )?;
        let loss = (ce + gates.budget_loss(&st, gc.target_active, w_b, gc.l1)?)
            .map_err(|e| cerr("gate loss", e))?;
        let grads = self.module.backward(&loss)?;
        let now = snapshot(&gates.zeta)?;
        let g = params::gradients(&grads, &gates.zeta)?;
        params::restore(&gates.zeta, &axpy(-gc.lr, &g, &now)?)
    }

    /// Run the support set through in training mode so that batch norm keeps its statistics.
    fn fix_statistics(&self, task: &Task) -> Result<()> {
        let masks = self.masks(false)?;
        self.logits(&task.support_x, &masks, Mode::Train)
            .map(|_| ())
    }

    /// Meta-gradient of one task at the current meta-weights (left unchanged); `w_b` is the
    /// budget weight of this point of meta-training.
    pub fn meta_gradient(&self, task: &Task, w_b: f64) -> Result<MetaGradient> {
        let theta = snapshot(&self.vars)?;
        let zeta0 = match &self.gates {
            Some(g) => Some(snapshot(&g.zeta)?),
            None => None,
        };
        let result = self.meta_gradient_inner(task, w_b);
        params::restore(&self.vars, &theta)?;
        if let (Some(g), Some(z)) = (&self.gates, &zeta0) {
            params::restore(&g.zeta, z)?;
        }
        result
    }

    fn meta_gradient_inner(&self, task: &Task, w_b: f64) -> Result<MetaGradient> {
        let steps = self.cfg.inner_steps;
        let trail = self.inner_loop(task, steps, w_b, self.cfg.algo == Algo::Maml)?;
        self.fix_statistics(task)?;
        // The query loss at the adapted weights and gates (straight-through masks, whose value
        // is the hard mask), plus the budget term for the gates.
        let st = self.masks(true)?;
        let logits = self.logits(&task.query_x, &st, Mode::Eval)?;
        let ce = cross_entropy(&logits, &task.query_y)?;
        let query_loss = scalar(&ce)?;
        let query_accuracy = accuracy(&logits, &task.query_labels)?;
        let total = match (&self.gates, &self.cfg.gates) {
            (Some(g), Some(gc)) => (ce + g.budget_loss(&st, gc.target_active, w_b, 0.0)?)
                .map_err(|e| cerr("query loss", e))?,
            _ => ce,
        };
        let grads = self.module.backward(&total)?;
        let gq = params::gradients(&grads, &self.vars)?;
        let gates = match &self.gates {
            Some(g) => Some(params::gradients(&grads, &g.zeta)?),
            None => None,
        };
        let weights = match self.cfg.algo {
            Algo::Fomaml => gq,
            Algo::Maml => {
                let mut g = gq;
                for step in trail.iter().rev() {
                    let hg = self.hvp(task, &step.weights, &step.masks, &g)?;
                    g = axpy(-self.cfg.inner_lr, &hg, &g)?;
                }
                g
            }
            Algo::Imaml => {
                let at = snapshot(&self.vars)?;
                let masks = self.masks(false)?;
                self.conjugate_gradient(task, &at, &masks, &gq)?
            }
        };
        Ok(MetaGradient {
            weights,
            gates,
            query_loss,
            query_accuracy,
        })
    }

    /// Solve (I + H/λ) x = b by conjugate gradient, H the support loss's Hessian at `at`.
    fn conjugate_gradient(
        &self,
        task: &Task,
        at: &[Tensor],
        masks: &[Tensor],
        b: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let lambda = self.cfg.lambda;
        let mut x = params::scale(0.0, b)?;
        let mut r = b.to_vec();
        let mut p = b.to_vec();
        let mut rr = dot(&r, &r)?;
        for _ in 0..self.cfg.cg_steps {
            if rr <= 1e-20 {
                break;
            }
            let ap = axpy(1.0 / lambda, &self.hvp(task, at, masks, &p)?, &p)?;
            let pap = dot(&p, &ap)?;
            if pap <= 0.0 {
                // Not positive definite along p (a non-convex support loss): stop here.
                break;
            }
            let a = rr / pap;
            x = axpy(a, &p, &x)?;
            r = axpy(-a, &ap, &r)?;
            let rr_new = dot(&r, &r)?;
            p = axpy(rr_new / rr, &p, &r)?;
            rr = rr_new;
        }
        Ok(x)
    }

    /// Adapt to a task with `steps` inner steps at full budget weight and score its queries.
    /// The weights, statistics and gates are left adapted (the caller exports or restores).
    pub fn adapt(&self, task: &Task, steps: usize) -> Result<Adapted> {
        let w_b = self.cfg.gates.map(|g| g.budget_weight).unwrap_or(0.0);
        self.inner_loop(task, steps, w_b, false)?;
        self.fix_statistics(task)?;
        let masks = self.masks(false)?;
        let logits = self.logits(&task.query_x, &masks, Mode::Eval)?;
        let query_accuracy = accuracy(&logits, &task.query_labels)?;
        let masks = masks
            .iter()
            .map(params::to_f32)
            .collect::<Result<Vec<_>>>()?;
        let active = masks
            .iter()
            .map(|m| m.iter().filter(|&&v| v > 0.0).count())
            .collect();
        Ok(Adapted {
            query_accuracy,
            active,
            masks,
        })
    }

    /// The batch-norm running statistics.
    fn stat_vars(&self) -> Vec<Var> {
        self.module
            .running_stats()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// The current meta-weights, statistics and gates (to restore after [`Learner::adapt`]).
    pub fn save_state(&self) -> Result<State> {
        Ok(State {
            weights: snapshot(&self.vars)?,
            stats: snapshot(&self.stat_vars())?,
            gates: match &self.gates {
                Some(g) => Some(snapshot(&g.zeta)?),
                None => None,
            },
        })
    }

    pub fn restore_state(&self, s: &State) -> Result<()> {
        params::restore(&self.vars, &s.weights)?;
        params::restore(&self.stat_vars(), &s.stats)?;
        if let (Some(g), Some(z)) = (&self.gates, &s.gates) {
            params::restore(&g.zeta, z)?;
        }
        Ok(())
    }

    /// The query loss after the inner loop as a function of the meta-weights, for checking
    /// meta-gradients by finite differences (the weights, statistics and gates are restored).
    /// The meta-gradient treats the support statistics at the adapted weights as constants:
    /// pass them as `frozen_stats` to differentiate the same function. Returns the loss and
    /// the statistics the adapted weights gave.
    pub fn adapted_query_loss(
        &self,
        task: &Task,
        frozen_stats: Option<&[Tensor]>,
    ) -> Result<(f64, Vec<Tensor>)> {
        let state = self.save_state()?;
        let result = (|| {
            self.inner_loop(task, self.cfg.inner_steps, 0.0, false)?;
            self.fix_statistics(task)?;
            let stats = self.stat_vars();
            let adapted = snapshot(&stats)?;
            if let Some(f) = frozen_stats {
                params::restore(&stats, f)?;
            }
            let masks = self.masks(false)?;
            let loss = scalar(&cross_entropy(
                &self.logits(&task.query_x, &masks, Mode::Eval)?,
                &task.query_y,
            )?)?;
            Ok((loss, adapted))
        })();
        self.restore_state(&state)?;
        result
    }
}

/// Saved meta-weights, batch-norm statistics and gates.
pub struct State {
    pub weights: Vec<Tensor>,
    pub stats: Vec<Tensor>,
    pub gates: Option<Vec<Tensor>>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(|e| cerr("loss", e))
}

/// Share of rows whose largest logit is the label.
pub fn accuracy(logits: &Tensor, labels: &[usize]) -> Result<f64> {
    let pred: Vec<u32> = logits
        .argmax(1)
        .and_then(|t| t.to_vec1())
        .map_err(|e| cerr("predictions", e))?;
    let right = pred
        .iter()
        .zip(labels)
        .filter(|(&p, &l)| p as usize == l)
        .count();
    Ok(right as f64 / labels.len().max(1) as f64)
}
