//! Training on the ONNX graph IR: data sets, model families (ONNX graph builders with seeded
//! initial weights), recipes (`edgeslim train RECIPE.toml`) and model cards.
//!
//! # The engine API (stable; other tools build on it)
//!
//! ```no_run
//! use edgeslim_train::engine::{EngineOptions, GraphModule, Mode, candle_core::Tensor};
//! use edgeslim_train::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer};
//! # fn demo(model: &edgeslim_onnx::OnnxModel, x: Tensor, y: Tensor) -> edgeslim_train::Result<()> {
//! // 1. Compile: weights (initializers or Constant nodes) become candle `Var`s.
//! let m = GraphModule::from_onnx(model, &EngineOptions::default())?;
//! // 2. Forward with autograd, in Mode::Train (batch statistics, dropout) or Mode::Eval;
//! //    `want` returns intermediate tensors by name too (feature losses).
//! let out = m.forward(&[("x", x)], Mode::Train, &[])?;
//! let loss = edgeslim_train::engine::loss::cross_entropy(&out["logits"], &y)?;
//! // 3. Backward (on the module's thread pool).
//! let grads = m.backward(&loss)?;
//! // 4. Optimiser step: updates the `Var`s in place.
//! let mut opt = AdamW::new(m.trainable(), AdamWConfig::default(), &DecayPolicy::default())?;
//! m.in_pool(|| opt.step(&grads))?;
//! // 5. Write the weights (and batch-norm running statistics) back into the same ONNX graph.
//! let trained: edgeslim_onnx::OnnxModel = m.export()?;
//! # Ok(()) }
//! ```
//! - `GraphModule::forward_inference` runs eval mode without autograd (teachers, evaluation).
//! - `EngineOptions::freeze` keeps weights fixed by regex/name/predicate; `dtype: F64` plus
//!   [`engine::gradcheck`] checks gradients against finite differences.
//! - An op the engine lacks is an error naming the op and the node ([`engine::SUPPORTED_OPS`]).
//!
//! # Fine-tuning and distillation for other tools
//!
//! [`finetune`]`(model, data, &FinetuneOptions { .. })` runs the supervised loop (optionally
//! distilling from `FinetuneOptions::distill`) and returns the best held-out checkpoint as an
//! ONNX model ([`classify`] documents the loop); [`classify::evaluate`] gives accuracy,
//! per-class accuracy and the confusion matrix. Data: [`zoo::load_data`] for `mnist` /
//! `folder:PATH` specs.

pub mod card;
pub mod classify;
pub mod dense;
pub mod engine;
pub mod families;
pub mod interrupt;
pub mod optim;
pub mod recipe;
pub mod tracker;
pub mod zoo;

pub use classify::{
    finetune, Distill, EvalReport, FinetuneOptions, FinetuneResult, Sparsity, StepHook,
};

pub use edgeslim_onnx::{Error, Result};
