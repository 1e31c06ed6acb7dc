//! BatchNormalization (train and eval), LayerNormalization and InstanceNormalization, all
//! composed from differentiable primitives (candle's fused layer_norm has no gradient).

use super::{bail, channel_shape, input, Attrs, BuildCtx, Op, OpResult, RunCtx};
use crate::engine::Mode;
use candle_core::{Tensor, Var};

pub(crate) struct BatchNorm {
    eps: f64,
    momentum: f64,
    /// The running mean and variance when they are stored tensors (the usual case);
    /// training mode updates them in place.
    running: Option<(Var, Var)>,
}

impl BatchNorm {
    pub fn build(a: &Attrs, cx: &BuildCtx) -> OpResult<BatchNorm> {
        let node = a.0;
        let stat = |k: usize| node.input.get(k).and_then(|n| cx.stats.get(n)).cloned();
        let running = match (stat(3), stat(4)) {
            (Some(m), Some(v)) => Some((m, v)),
            _ => None,
        };
        Ok(BatchNorm {
            eps: a.f("epsilon", 1e-5) as f64,
            momentum: a.f("momentum", 0.9) as f64,
            running,
        })
    }
}

/// Dimensions to reduce over for per-channel statistics of an `[N, C, ...]` tensor.
fn non_channel_dims(rank: usize) -> Vec<usize> {
    (0..rank).filter(|&d| d != 1).collect()
}

impl Op for BatchNorm {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let scale = input(ins, 1)?;
        let bias = input(ins, 2)?;
        let mean = input(ins, 3)?;
        let var = input(ins, 4)?;
        if x.rank() < 2 {
            bail!("input of shape {:?} has no channel axis", x.dims());
        }
        let c = x.dim(1)?;
        let shape = channel_shape(x.rank(), c);
        let per_channel = |t: &Tensor| t.reshape(shape.as_slice());
        match cx.mode {
            Mode::Eval => {
                // y = x·a + b with a = γ/√(σ²+ε), b = β − μ·a: two passes over x.
                let a = (scale / (var + self.eps)?.sqrt()?)?;
                let b = (bias - (mean * &a)?)?;
                let y = x
                    .broadcast_mul(&per_channel(&a)?)?
                    .broadcast_add(&per_channel(&b)?)?;
                Ok(vec![y])
            }
            Mode::Train => {
                let dims = non_channel_dims(x.rank());
                let count = x.elem_count() / c.max(1);
                if count < 2 {
                    bail!(
                        "batch statistics need more than one value per channel (input {:?})",
                        x.dims()
                    );
                }
                let mu = x.mean_keepdim(dims.as_slice())?;
                let xc = x.broadcast_sub(&mu)?;
                let sigma2 = xc.sqr()?.mean_keepdim(dims.as_slice())?;
                let inv = (sigma2.clone() + self.eps)?.sqrt()?.recip()?;
                let y = xc
                    .broadcast_mul(&inv)?
                    .broadcast_mul(&per_channel(scale)?)?
                    .broadcast_add(&per_channel(bias)?)?;
                // ONNX semantics: running = momentum·running + (1 − momentum)·batch, with the
                // batch's (biased) variance, as the ONNX reference implementation does.
                let m = self.momentum;
                let batch_mean = mu.detach().flatten_all()?;
                let batch_var = sigma2.detach().flatten_all()?;
                let new_mean = ((mean.detach() * m)? + (batch_mean * (1.0 - m))?)?;
                let new_var = ((var.detach() * m)? + (batch_var * (1.0 - m))?)?;
                if let Some((rm, rv)) = &self.running {
                    rm.set(&new_mean)?;
                    rv.set(&new_var)?;
                }
                Ok(vec![y, new_mean, new_var])
            }
        }
    }

    fn stateful(&self) -> bool {
        true
    }
}

pub(crate) struct LayerNorm {
    axis: i64,
    eps: f64,
}

impl LayerNorm {
    pub fn build(a: &Attrs) -> OpResult<LayerNorm> {
        Ok(LayerNorm {
            axis: a.i("axis", -1),
            eps: a.f("epsilon", 1e-5) as f64,
        })
    }
}

impl Op for LayerNorm {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let scale = input(ins, 1)?;
        let axis = super::norm_axis(self.axis, x.rank())?;
        let dims: Vec<usize> = (axis..x.rank()).collect();
        let mu = x.mean_keepdim(dims.as_slice())?;
        let xc = x.broadcast_sub(&mu)?;
        let var = xc.sqr()?.mean_keepdim(dims.as_slice())?;
        let inv = (var + self.eps)?.sqrt()?.recip()?;
        let mut y = xc.broadcast_mul(&inv)?.broadcast_mul(scale)?;
        if let Some(b) = super::opt_input(ins, 2) {
            y = y.broadcast_add(b)?;
        }
        Ok(vec![y, mu, inv])
    }
}

pub(crate) struct InstanceNorm {
    eps: f64,
}

impl InstanceNorm {
    pub fn build(a: &Attrs) -> OpResult<InstanceNorm> {
        Ok(InstanceNorm {
            eps: a.f("epsilon", 1e-5) as f64,
        })
    }
}

impl Op for InstanceNorm {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let scale = input(ins, 1)?;
        let bias = input(ins, 2)?;
        if x.rank() < 3 {
            bail!("input of shape {:?} has no spatial axes", x.dims());
        }
        let shape = channel_shape(x.rank(), x.dim(1)?);
        let dims: Vec<usize> = (2..x.rank()).collect();
        let mu = x.mean_keepdim(dims.as_slice())?;
        let xc = x.broadcast_sub(&mu)?;
        let var = xc.sqr()?.mean_keepdim(dims.as_slice())?;
        let y = xc
            .broadcast_mul(&(var + self.eps)?.sqrt()?.recip()?)?
            .broadcast_mul(&scale.reshape(shape.as_slice())?)?
            .broadcast_add(&bias.reshape(shape.as_slice())?)?;
        Ok(vec![y])
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, random_onnx, single_node};
    use crate::engine::{EngineOptions, GraphModule, Mode};
    use edgeslim_onnx::node::{float, int};

    fn bn_model() -> edgeslim_onnx::OnnxModel {
        single_node(
            "BatchNormalization",
            &[("x", &[4, 3, 2, 2])],
            &[
                ("gamma", random_onnx(&[3], 1, 0.5, 1.5)),
                ("beta", random_onnx(&[3], 2, -0.5, 0.5)),
                ("mean", random_onnx(&[3], 3, -0.5, 0.5)),
                ("var", random_onnx(&[3], 4, 0.5, 2.0)),
            ],
            vec![float("epsilon", 1e-3), float("momentum", 0.8)],
            1,
            15,
        )
    }

    #[test]
    fn batchnorm_gradients_in_train_and_eval() {
        let x = random(&[4, 3, 2, 2], 5, -2., 2.);
        assert_grads(&bn_model(), &[("x", x.clone())], Mode::Eval);
        assert_grads(&bn_model(), &[("x", x)], Mode::Train);
    }

    #[test]
    fn batchnorm_train_updates_running_stats_with_onnx_momentum() {
        let g = GraphModule::from_onnx(&bn_model(), &EngineOptions::default()).unwrap();
        let stats = g.running_stats();
        assert_eq!(stats.len(), 2, "mean and var are statistics, not weights");
        assert!(g
            .trainable()
            .iter()
            .all(|(n, _)| n == "gamma" || n == "beta"));
        let before_mean = stats[0].1.as_tensor().to_vec1::<f32>().unwrap();
        let before_var = stats[1].1.as_tensor().to_vec1::<f32>().unwrap();
        let x = random(&[4, 3, 2, 2], 5, -2., 2.)
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        // Eval leaves the statistics alone.
        g.forward(&[("x", x.clone())], Mode::Eval, &[]).unwrap();
        assert_eq!(
            stats[0].1.as_tensor().to_vec1::<f32>().unwrap(),
            before_mean
        );
        g.forward(&[("x", x.clone())], Mode::Train, &[]).unwrap();
        let dims = [0usize, 2, 3];
        let bm = x.mean_keepdim(dims.as_slice()).unwrap();
        let bv = x
            .broadcast_sub(&bm)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_keepdim(dims.as_slice())
            .unwrap();
        let bm = bm.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = bv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let after_mean = stats[0].1.as_tensor().to_vec1::<f32>().unwrap();
        let after_var = stats[1].1.as_tensor().to_vec1::<f32>().unwrap();
        for c in 0..3 {
            assert!((after_mean[c] - (0.8 * before_mean[c] + 0.2 * bm[c])).abs() < 1e-5);
            assert!((after_var[c] - (0.8 * before_var[c] + 0.2 * bv[c])).abs() < 1e-5);
        }
        // And the export carries them.
        let e = g.export().unwrap();
        let t = e.constant("mean").unwrap().unwrap().to_f32_vec();
        assert_eq!(t, after_mean);
    }

    #[test]
    fn layernorm_and_instancenorm_gradients() {
        let m = single_node(
            "LayerNormalization",
            &[("x", &[2, 3, 4])],
            &[
                ("s", random_onnx(&[4], 1, 0.5, 1.5)),
                ("b", random_onnx(&[4], 2, -0.5, 0.5)),
            ],
            vec![int("axis", -1), float("epsilon", 1e-5)],
            1,
            17,
        );
        assert_grads(&m, &[("x", random(&[2, 3, 4], 3, -2., 2.))], Mode::Eval);
        let m = single_node(
            "LayerNormalization",
            &[("x", &[2, 3, 4])],
            &[("s", random_onnx(&[3, 4], 4, 0.5, 1.5))],
            vec![int("axis", 1)],
            1,
            17,
        );
        assert_grads(&m, &[("x", random(&[2, 3, 4], 5, -2., 2.))], Mode::Eval);
        let m = single_node(
            "InstanceNormalization",
            &[("x", &[2, 3, 4, 2])],
            &[
                ("s", random_onnx(&[3], 6, 0.5, 1.5)),
                ("b", random_onnx(&[3], 7, -0.5, 0.5)),
            ],
            vec![],
            1,
            13,
        );
        assert_grads(&m, &[("x", random(&[2, 3, 4, 2], 8, -2., 2.))], Mode::Eval);
    }
}
