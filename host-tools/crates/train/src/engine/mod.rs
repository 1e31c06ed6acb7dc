//! The training engine: our own differentiable executor over the ONNX graph IR, on candle
//! tensors.
//!
//! A [`GraphModule`] is compiled once from an [`OnnxModel`]: weights become candle `Var`s,
//! batch-norm running statistics become `Var`s updated in training mode, constant subgraphs
//! are folded, and shape subgraphs are evaluated once per input shape. `forward` runs the
//! graph with autograd (candle records the ops; `loss.backward()` gives a `GradStore`), and
//! `export` writes the same graph back with the current weights, so every trained model is an
//! ordinary ONNX file that ONNX Runtime and tract check independently.
//!
//! ```no_run
//! # use edgeslim_train::engine::{GraphModule, EngineOptions, Mode};
//! # fn demo(model: &edgeslim_onnx::OnnxModel, x: candle_core::Tensor) -> edgeslim_train::Result<()> {
//! let module = GraphModule::from_onnx(model, &EngineOptions::default())?;
//! let out = module.forward(&[("x", x)], Mode::Train, &[])?;
//! # Ok(()) }
//! ```

mod compile;
mod convert;
pub mod gradcheck;
pub mod loss;
pub(crate) mod ops;
pub mod reference;

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use compile::{Plan, Source, Stored};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::input::SplitMix64;
use ops::RunCtx;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The tensor library the engine runs on, re-exported so callers need no version of their own.
pub use candle_core;
pub use ops::SUPPORTED_OPS;

/// Training mode (batch statistics, dropout) or evaluation mode (running statistics, no
/// dropout). Both record gradients in `forward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Which weights to keep fixed.
#[derive(Clone)]
pub enum Freeze {
    /// Weights whose name the regular expression matches (anywhere: anchor with `^…$`).
    Pattern(regex::Regex),
    /// Exactly these names.
    Names(HashSet<String>),
    /// Any rule.
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Freeze {
    /// A `--freeze REGEX` pattern.
    pub fn pattern(p: &str) -> Result<Freeze> {
        regex::Regex::new(p)
            .map(Freeze::Pattern)
            .map_err(|e| Error::option_value("freeze", p, format!("not a regular expression: {e}")))
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Freeze::Pattern(r) => r.is_match(name),
            Freeze::Names(s) => s.contains(name),
            Freeze::Predicate(f) => f(name),
        }
    }
}

impl std::fmt::Debug for Freeze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Freeze::Pattern(r) => write!(f, "Freeze::Pattern({})", r.as_str()),
            Freeze::Names(s) => write!(f, "Freeze::Names({} names)", s.len()),
            Freeze::Predicate(_) => write!(f, "Freeze::Predicate(..)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Weights to keep fixed (not returned by `trainable`, no gradient computed for them).
    pub freeze: Option<Freeze>,
    /// Threads for candle's kernels and ours; 0 = all cores (rayon's global pool).
    pub threads: usize,
    /// Float type of weights and activations: F32, or F64 for gradient checks.
    pub dtype: DType,
    /// Seed of dropout's random stream.
    pub seed: u64,
    /// Refuse a model without any float weight (what training needs). Off for graphs that
    /// are only run (feature extraction).
    pub require_weights: bool,
    /// Float initializers whose name starts with one of these are weights wherever they are
    /// used, even as one-element tensors in generic ops (which are constants otherwise): an
    /// adapter's learned scalars and a supernet's gates.
    pub weight_prefixes: Vec<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            freeze: None,
            threads: 0,
            dtype: DType::F32,
            seed: 0,
            require_weights: true,
            weight_prefixes: Vec::new(),
        }
    }
}

/// What a weight is to the layer that reads it (used for weight-decay exclusions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRole {
    /// Conv / ConvTranspose / Gemm / MatMul weight.
    Kernel,
    /// A bias (of a layer, or a 1-D tensor added after a MatMul).
    Bias,
    /// Scale (γ) of a batch, layer or instance normalisation.
    NormScale,
    /// Shift (β) of a normalisation.
    NormBias,
    /// Anything else learned: class tokens, positional embeddings, PReLU slopes.
    Other,
}

#[derive(Debug, Clone)]
pub struct WeightInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: WeightRole,
    pub trainable: bool,
}

/// Results of shape-only subgraphs by input signature (shapes of the graph inputs).
type Memo = HashMap<Vec<Vec<usize>>, Vec<(usize, Tensor)>>;
const MEMO_CAPACITY: usize = 16;

/// A compiled ONNX graph with trainable weights.
pub struct GraphModule {
    plan: Plan,
    weights: Vec<Stored>,
    stats: Vec<Stored>,
    source: OnnxModel,
    dtype: DType,
    rng: Mutex<SplitMix64>,
    memo: Mutex<Memo>,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for GraphModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphModule")
            .field("model", &self.source.label())
            .field("steps", &self.plan.steps.len())
            .field("weights", &self.weights.len())
            .field("params", &self.param_count())
            .finish()
    }
}

impl GraphModule {
    /// Compile `model`. An op the engine lacks is an error naming the op and the node.
    pub fn from_onnx(model: &OnnxModel, opts: &EngineOptions) -> Result<GraphModule> {
        if !matches!(opts.dtype, DType::F32 | DType::F64) {
            return Err(Error::Invalid(format!(
                "the training engine computes in f32 or f64, not {:?}",
                opts.dtype
            )));
        }
        let c = compile::compile(model, opts)?;
        let pool = match opts.threads {
            0 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::Other(format!("starting {n} threads: {e}")))?,
            ),
        };
        Ok(GraphModule {
            plan: c.plan,
            weights: c.weights,
            stats: c.stats,
            source: model.clone(),
            dtype: opts.dtype,
            rng: Mutex::new(SplitMix64(opts.seed)),
            memo: Mutex::new(HashMap::new()),
            pool,
        })
    }

    /// Run `f` on the module's thread pool (all of rayon's global pool when `threads` is 0).
    /// `forward` and `backward` already do; use it for an optimiser step or a loss.
    pub fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Run the graph with autograd; returns every graph output plus the intermediate tensors
    /// named in `want` (feature distillation, calibration, anomaly features).
    pub fn forward(
        &self,
        inputs: &[(&str, Tensor)],
        mode: Mode,
        want: &[&str],
    ) -> Result<HashMap<String, Tensor>> {
        self.in_pool(|| self.run(inputs, mode, want, true))
    }

    /// Evaluation-mode forward without autograd: weights are read detached and activations
    /// are freed as soon as no later node needs them (teachers, calibration, evaluation).
    pub fn forward_inference(
        &self,
        inputs: &[(&str, Tensor)],
        want: &[&str],
    ) -> Result<HashMap<String, Tensor>> {
        self.in_pool(|| self.run(inputs, Mode::Eval, want, false))
    }

    /// `loss.backward()` on the module's thread pool.
    pub fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        self.in_pool(|| loss.backward())
            .map_err(|e| Error::Other(format!("backward pass: {}", first_line(&e))))
    }

    /// Float weights that are trained: every weight except frozen ones. Batch-norm running
    /// statistics are not weights.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.weights
            .iter()
            .filter(|w| !w.frozen)
            .map(|w| (w.name.clone(), w.var.clone()))
            .collect()
    }

    /// `trainable`, or an error when there is nothing to train (all frozen, or no weights).
    pub fn require_trainable(&self) -> Result<Vec<(String, Var)>> {
        let t = self.trainable();
        if t.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no trainable float weight ({} weights, all frozen or none)",
                self.source.label(),
                self.weights.len()
            )));
        }
        Ok(t)
    }

    /// Every weight with its shape, role and whether it is trained.
    pub fn weights(&self) -> Vec<WeightInfo> {
        self.weights
            .iter()
            .map(|w| WeightInfo {
                name: w.name.clone(),
                shape: w.var.dims().to_vec(),
                role: w.role,
                trainable: !w.frozen,
            })
            .collect()
    }

    /// The batch-norm running statistics (mean and variance `Var`s by tensor name).
    pub fn running_stats(&self) -> Vec<(String, Var)> {
        self.stats
            .iter()
            .map(|s| (s.name.clone(), s.var.clone()))
            .collect()
    }

    /// Overwrite one weight's values (frozen or not; a supernet's gates between steps).
    pub fn set_weight(&self, name: &str, values: &[f32]) -> Result<()> {
        let w = self
            .weights
            .iter()
            .find(|w| w.name == name)
            .ok_or_else(|| Error::tensor(name, "not a weight of the module"))?;
        let dims = w.var.dims().to_vec();
        let t = candle_core::Tensor::from_slice(values, dims.as_slice(), w.var.device())
            .and_then(|t| t.to_dtype(w.var.dtype()))
            .map_err(|e| {
                Error::tensor(name, format!("{} values: {}", values.len(), first_line(&e)))
            })?;
        w.var
            .set(&t)
            .map_err(|e| Error::tensor(name, first_line(&e)))
    }

    /// Change which weights are frozen.
    pub fn set_freeze(&mut self, freeze: Option<&Freeze>) {
        for w in &mut self.weights {
            w.frozen = freeze.is_some_and(|f| f.matches(&w.name));
        }
    }

    /// Restart dropout's random stream (gradient checks replay the same masks).
    pub fn set_seed(&self, seed: u64) {
        if let Ok(mut r) = self.rng.lock() {
            *r = SplitMix64(seed);
        }
    }

    /// Number of trainable scalars.
    pub fn param_count(&self) -> usize {
        self.weights
            .iter()
            .filter(|w| !w.frozen)
            .map(|w| w.var.elem_count())
            .sum()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn input_names(&self) -> Vec<&str> {
        self.plan.inputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn output_names(&self) -> Vec<&str> {
        self.plan.outputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The same graph with the current weights and running statistics written back, each in
    /// the element type and place (initializer or Constant node) it came from.
    pub fn export(&self) -> Result<OnnxModel> {
        let mut m = self.source.clone();
        for s in self.weights.iter().chain(&self.stats) {
            let t = convert::to_onnx(&s.name, s.var.as_tensor(), &s.kind)?;
            match s.source {
                Source::Initializer => m.set_initializer(&s.name, &t),
                Source::ConstantNode => {
                    let node = m
                        .graph_mut()
                        .node
                        .iter_mut()
                        .find(|n| n.op_type == "Constant" && n.output.first() == Some(&s.name))
                        .ok_or_else(|| Error::tensor(&s.name, "its Constant node disappeared"))?;
                    node.attribute = vec![edgeslim_onnx::node::tensor("value", &t)];
                }
            }
        }
        Ok(m)
    }

    fn run(
        &self,
        inputs: &[(&str, Tensor)],
        mode: Mode,
        want: &[&str],
        grad: bool,
    ) -> Result<HashMap<String, Tensor>> {
        let plan = &self.plan;
        let mut vals = plan.base.clone();
        for w in &self.weights {
            vals[w.slot] = Some(if grad && !w.frozen {
                w.var.as_tensor().clone()
            } else {
                w.var.as_detached_tensor()
            });
        }
        for s in &self.stats {
            vals[s.slot] = Some(s.var.as_detached_tensor());
        }
        for (name, t) in inputs {
            let slot = plan
                .inputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "'{name}' is not an input of the graph (inputs: {})",
                        self.input_names().join(", ")
                    ))
                })?;
            let t = if t.dtype().is_float() && t.dtype() != self.dtype {
                t.to_dtype(self.dtype)
                    .map_err(|e| Error::tensor(*name, first_line(&e)))?
            } else {
                t.clone()
            };
            vals[slot] = Some(t);
        }
        let mut signature = Vec::with_capacity(plan.inputs.len());
        for (name, slot) in &plan.inputs {
            match &vals[*slot] {
                Some(t) => signature.push(t.dims().to_vec()),
                None => {
                    return Err(Error::Invalid(format!(
                        "graph input '{name}' was not given"
                    )))
                }
            }
        }
        let want_slots: Vec<(&str, usize)> =
            want.iter()
                .map(|w| {
                    plan.slot_of.get(*w).map(|s| (*w, *s)).ok_or_else(|| {
                        Error::Invalid(format!("'{w}' is not a tensor of the graph"))
                    })
                })
                .collect::<Result<_>>()?;
        let mut keep = vec![false; vals.len()];
        for (_, s) in &plan.outputs {
            keep[*s] = true;
        }
        for &(_, s) in &want_slots {
            keep[s] = true;
        }
        // Shape values are memoised at the end of the run: an inference run must not free
        // them on their last use, or the memo misses them and the next run with the same
        // input shapes skips the steps that made them (a Reshape then finds no shape).
        for &s in &plan.shape_slots {
            keep[s] = true;
        }

        let memo_hit = !plan.shape_slots.is_empty() && {
            let memo = self
                .memo
                .lock()
                .map_err(|_| Error::Other("shape memo lock poisoned".into()))?;
            match memo.get(&signature) {
                Some(saved) => {
                    for (s, t) in saved {
                        vals[*s] = Some(t.clone());
                    }
                    true
                }
                None => false,
            }
        };

        let ctx = RunCtx {
            mode,
            dtype: self.dtype,
            rng: &self.rng,
        };
        let mut args: Vec<Option<Tensor>> = Vec::with_capacity(8);
        for (k, step) in plan.steps.iter().enumerate() {
            if step.shape_only && memo_hit {
                continue;
            }
            args.clear();
            args.extend(step.inputs.iter().map(|s| s.and_then(|s| vals[s].clone())));
            let outs = step.op.run(&ctx, &args).map_err(|e| Error::Node {
                node: step.name.clone(),
                op: step.op_type.clone(),
                reason: e.0,
            })?;
            for (o, t) in step.outputs.iter().zip(outs) {
                if let Some(o) = o {
                    vals[*o] = Some(t);
                }
            }
            if !grad {
                // Free activations no later step reads (inference keeps no autograd graph,
                // so this really returns memory).
                for s in step.inputs.iter().flatten() {
                    if plan.last_use[*s] == Some(k) && !keep[*s] && plan.base[*s].is_none() {
                        vals[*s] = None;
                    }
                }
            }
        }
        if !plan.shape_slots.is_empty() && !memo_hit {
            let saved: Vec<(usize, Tensor)> = plan
                .shape_slots
                .iter()
                .filter_map(|s| vals[*s].clone().map(|t| (*s, t)))
                .collect();
            if let Ok(mut memo) = self.memo.lock() {
                if memo.len() >= MEMO_CAPACITY {
                    memo.clear();
                }
                memo.insert(signature, saved);
            }
        }

        let mut out = HashMap::new();
        for (name, s) in plan
            .outputs
            .iter()
            .map(|(n, s)| (n.as_str(), *s))
            .chain(want_slots)
        {
            let t = vals[s]
                .clone()
                .ok_or_else(|| Error::Graph(format!("tensor '{name}' was not computed")))?;
            out.insert(name.to_string(), t);
        }
        Ok(out)
    }
}

fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}
