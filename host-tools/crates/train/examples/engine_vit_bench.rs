//! Training throughput of the graph engine against the same ViT written directly in candle.
//!
//! Both train a ViT (4 blocks, 2 heads, dim 64, MLP 128, 7x7 patches of 28x28 inputs, batch
//! 64) with AdamW: forward in training mode, cross-entropy, backward, optimiser step. The
//! engine runs the ONNX graph `train::engine::reference::vit` builds; the hand-written model
//! uses candle-nn layers with the same shapes (composed LayerNorm and softmax: the fused
//! kernels have no gradient). Prints one JSON object.
//!
//! ```sh
//! cargo run --release -p edgeslim-train --example engine_vit_bench [-- --steps 20 --batch 64]
//! ```

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Optimizer as _, VarBuilder, VarMap};
use edgeslim_train::engine::reference::{vit, VitConfig};
use edgeslim_train::engine::{loss, EngineOptions, GraphModule, Mode};
use edgeslim_train::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// LayerNorm over the last axis from primitives (candle_nn's fused kernel has no gradient).
struct LayerNorm {
    g: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn new(vb: VarBuilder, dim: usize) -> candle_core::Result<LayerNorm> {
        Ok(LayerNorm {
            g: vb.get_with_hints(dim, "g", candle_nn::Init::Const(1.0))?,
            b: vb.get_with_hints(dim, "b", candle_nn::Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mu = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mu)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_mul(&(var + 1e-6)?.sqrt()?.recip()?)?
            .broadcast_mul(&self.g)?
            .broadcast_add(&self.b)
    }
}

struct Block {
    ln1: LayerNorm,
    qkv: candle_nn::Linear,
    proj: candle_nn::Linear,
    ln2: LayerNorm,
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
    heads: usize,
}

impl Block {
    fn new(vb: VarBuilder, dim: usize, heads: usize, mlp: usize) -> candle_core::Result<Block> {
        Ok(Block {
            ln1: LayerNorm::new(vb.pp("ln1"), dim)?,
            qkv: candle_nn::linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: candle_nn::linear(dim, dim, vb.pp("proj"))?,
            ln2: LayerNorm::new(vb.pp("ln2"), dim)?,
            fc1: candle_nn::linear(dim, mlp, vb.pp("fc1"))?,
            fc2: candle_nn::linear(mlp, dim, vb.pp("fc2"))?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, t, d) = x.dims3()?;
        let dh = d / self.heads;
        let qkv = self
            .qkv
            .forward(&self.ln1.forward(x)?)?
            .reshape((n, t, 3, self.heads, dh))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let att = (q.matmul(&k.t()?)? * (1.0 / (dh as f64).sqrt()))?;
        let att = candle_nn::ops::softmax(&att, D::Minus1)?;
        let o = att.matmul(&v)?.transpose(1, 2)?.reshape((n, t, d))?;
        let x = (x + self.proj.forward(&o)?)?;
        let f = self
            .fc2
            .forward(&self.fc1.forward(&self.ln2.forward(&x)?)?.gelu_erf()?)?;
        x + f
    }
}

struct Vit {
    patch: candle_nn::Conv2d,
    cls: Tensor,
    pos: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: candle_nn::Linear,
}

impl Vit {
    fn new(vb: VarBuilder, c: &VitConfig) -> candle_core::Result<Vit> {
        let conv = candle_nn::Conv2dConfig {
            stride: 7,
            ..Default::default()
        };
        Ok(Vit {
            patch: candle_nn::conv2d(1, c.dim, 7, conv, vb.pp("patch"))?,
            cls: vb.get_with_hints((1, 1, c.dim), "cls", candle_nn::Init::Const(0.0))?,
            pos: vb.get_with_hints(
                (1, 17, c.dim),
                "pos",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            blocks: (0..c.blocks)
                .map(|k| Block::new(vb.pp(format!("blk{k}")), c.dim, c.heads, c.mlp))
                .collect::<candle_core::Result<_>>()?,
            norm: LayerNorm::new(vb.pp("norm"), c.dim)?,
            head: candle_nn::linear(c.dim, c.classes, vb.pp("head"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let p = self.patch.forward(x)?.flatten_from(2)?.transpose(1, 2)?;
        let d = p.dim(2)?;
        let cls = self.cls.broadcast_as((n, 1, d))?;
        let mut h = Tensor::cat(&[&cls, &p], 1)?.broadcast_add(&self.pos)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        let c = self.norm.forward(&h)?.narrow(1, 0, 1)?.squeeze(1)?;
        self.head.forward(&c)
    }
}

fn data(batch: usize) -> (Tensor, Tensor) {
    let x = edgeslim_train::engine::gradcheck::random(&[batch, 1, 28, 28], 1, 0.0, 1.0)
        .to_dtype(DType::F32)
        .expect("f32");
    let y: Vec<u32> = (0..batch as u32).map(|i| (i * 7) % 10).collect();
    (x, Tensor::from_vec(y, batch, &Device::Cpu).expect("labels"))
}

struct Timing {
    step_ms: f64,
    samples_per_s: f64,
    first_loss: f32,
    last_loss: f32,
}

fn time_steps(steps: usize, warmup: usize, batch: usize, mut step: impl FnMut() -> f32) -> Timing {
    let mut first = 0.0;
    for i in 0..warmup {
        let l = step();
        if i == 0 {
            first = l;
        }
    }
    let t = Instant::now();
    let mut last = 0.0;
    for _ in 0..steps {
        last = step();
    }
    let secs = t.elapsed().as_secs_f64();
    Timing {
        step_ms: 1e3 * secs / steps as f64,
        samples_per_s: (steps * batch) as f64 / secs,
        first_loss: first,
        last_loss: last,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps = arg("--steps", 20);
    let batch = arg("--batch", 64);
    let warmup = 3;
    let cfg = VitConfig::default();
    let (x, y) = data(batch);

    // The engine on the ONNX graph.
    let model = vit(&cfg);
    let g = GraphModule::from_onnx(&model, &EngineOptions::default())?;
    let params = g.param_count();
    let mut opt = AdamW::new(
        g.trainable(),
        AdamWConfig::default(),
        &DecayPolicy::default(),
    )?;
    let engine = time_steps(steps, warmup, batch, || {
        let out = g
            .forward(&[("x", x.clone())], Mode::Train, &[])
            .expect("forward");
        let l = loss::cross_entropy(&out["logits"], &y).expect("loss");
        let grads = g.backward(&l).expect("backward");
        opt.step(&grads).expect("step");
        l.to_scalar::<f32>().expect("scalar")
    });
    let fwd = time_steps(steps, warmup, batch, || {
        let out = g
            .forward_inference(&[("x", x.clone())], &[])
            .expect("forward");
        out["logits"]
            .sum_all()
            .and_then(|s| s.to_scalar::<f32>())
            .expect("scalar")
    });

    // The same network written directly in candle.
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let net = Vit::new(vb, &cfg)?;
    let hand_params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    let mut adamw = candle_nn::AdamW::new(vm.all_vars(), candle_nn::ParamsAdamW::default())?;
    let hand = time_steps(steps, warmup, batch, || {
        let logits = net.forward(&x).expect("forward");
        let l = loss::cross_entropy(&logits, &y).expect("loss");
        adamw.backward_step(&l).expect("step");
        l.to_scalar::<f32>().expect("scalar")
    });

    let report = serde_json::json!({
        "model": {"blocks": cfg.blocks, "dim": cfg.dim, "heads": cfg.heads, "mlp": cfg.mlp,
                  "patch": 7, "input": [batch, 1, 28, 28],
                  "params_engine": params, "params_candle": hand_params},
        "steps": steps,
        "threads": candle_core::utils::get_num_threads(),
        "engine": {"step_ms": engine.step_ms, "samples_per_s": engine.samples_per_s,
                   "loss_first": engine.first_loss, "loss_last": engine.last_loss,
                   "inference_samples_per_s": fwd.samples_per_s},
        "candle": {"step_ms": hand.step_ms, "samples_per_s": hand.samples_per_s,
                   "loss_first": hand.first_loss, "loss_last": hand.last_loss},
        "overhead_ratio": engine.step_ms / hand.step_ms,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
