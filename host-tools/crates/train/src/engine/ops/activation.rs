//! Activations, Softmax/LogSoftmax (composed: candle's fused softmax has no gradient) and
//! Dropout.

use super::{bail, input, opt_input, scalar_of, Attrs, BuildCtx, Op, OpResult, RunCtx};
use crate::engine::Mode;
use candle_core::{DType, Tensor};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Relu,
    LeakyRelu(f64),
    Elu(f64),
    HardSigmoid(f64, f64),
    HardSwish,
    Sigmoid,
    Tanh,
    Softplus,
    GeluErf,
    GeluTanh,
    Erf,
}

struct Activation(Kind);

/// `max(0, min(1, αx + β))`.
fn hard_sigmoid(x: &Tensor, alpha: f64, beta: f64) -> OpResult<Tensor> {
    Ok(x.affine(alpha, beta)?.clamp(0f64, 1f64)?)
}

impl Op for Activation {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let y = match self.0 {
            Kind::Relu => x.relu()?,
            Kind::LeakyRelu(alpha) => {
                let pos = x.ge(0f64)?;
                pos.where_cond(x, &x.affine(alpha, 0.0)?)?
            }
            Kind::Elu(alpha) => x.elu(alpha)?,
            Kind::HardSigmoid(a, b) => hard_sigmoid(x, a, b)?,
            Kind::HardSwish => (x * hard_sigmoid(x, 1.0 / 6.0, 0.5)?)?,
            Kind::Sigmoid => candle_nn::ops::sigmoid(x)?,
            Kind::Tanh => x.tanh()?,
            Kind::Softplus => {
                // log(1 + e^x) = relu(x) + log(1 + e^-|x|): no overflow for large x.
                (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?
            }
            Kind::GeluErf => x.gelu_erf()?,
            Kind::GeluTanh => x.gelu()?,
            Kind::Erf => x.erf()?,
        };
        Ok(vec![y])
    }
}

/// Clip with bounds as attributes (opset < 11) or inputs.
struct Clip {
    min: Option<f64>,
    max: Option<f64>,
}

impl Op for Clip {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let lo = match opt_input(ins, 1) {
            Some(t) => Some(scalar_of(t)?),
            None => self.min,
        };
        let hi = match opt_input(ins, 2) {
            Some(t) => Some(scalar_of(t)?),
            None => self.max,
        };
        let mut y = x.clone();
        if let Some(lo) = lo {
            y = y.maximum(lo)?;
        }
        if let Some(hi) = hi {
            y = y.minimum(hi)?;
        }
        Ok(vec![y])
    }
}

struct PRelu;

impl Op for PRelu {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let slope = input(ins, 1)?;
        let neg = x.broadcast_mul(slope)?;
        Ok(vec![x.ge(0f64)?.where_cond(x, &neg)?])
    }
}

/// Softmax or LogSoftmax along an axis.
struct Softmax {
    axis: i64,
    log: bool,
    /// Opset < 13: the input is seen as 2-D, flattened at `axis`, and normalised over the
    /// second dimension.
    legacy: bool,
}

impl Op for Softmax {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let axis = super::norm_axis(self.axis, x.rank())?;
        let y = if self.legacy && axis + 1 != x.rank() {
            let rows: usize = x.dims()[..axis].iter().product();
            let flat = x.reshape((rows, x.elem_count() / rows.max(1)))?;
            softmax(&flat, 1, self.log)?.reshape(x.dims())?
        } else {
            softmax(x, axis, self.log)?
        };
        Ok(vec![y])
    }
}

/// exp(x − max) / Σ exp(x − max), or its log; the max is a constant shift (detached: the
/// gradient does not depend on it).
pub(crate) fn softmax(x: &Tensor, axis: usize, log: bool) -> OpResult<Tensor> {
    let m = x.max_keepdim(axis)?.detach();
    let shifted = x.broadcast_sub(&m)?;
    let e = shifted.exp()?;
    let s = e.sum_keepdim(axis)?;
    Ok(if log {
        shifted.broadcast_sub(&s.log()?)?
    } else {
        e.broadcast_div(&s)?
    })
}

struct Dropout {
    ratio: f64,
}

impl Op for Dropout {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let ratio = match opt_input(ins, 1) {
            Some(t) => scalar_of(t)?,
            None => self.ratio,
        };
        if !(0.0..1.0).contains(&ratio) {
            bail!("dropout ratio {ratio} must be in [0, 1)");
        }
        if cx.mode == Mode::Eval || ratio == 0.0 {
            let mask = Tensor::ones(x.dims(), DType::U8, x.device())?;
            return Ok(vec![x.clone(), mask]);
        }
        let keep = 1.0 - ratio;
        let bits: Vec<u8> = {
            let mut rng = cx
                .rng
                .lock()
                .map_err(|_| super::OpError("the dropout generator lock was poisoned".into()))?;
            (0..x.elem_count())
                .map(|_| u8::from((rng.next_f32() as f64) < keep))
                .collect()
        };
        let mask = Tensor::from_vec(bits, x.dims(), x.device())?;
        let scale = mask.to_dtype(x.dtype())?.affine(1.0 / keep, 0.0)?;
        Ok(vec![(x * scale)?, mask])
    }

    fn stateful(&self) -> bool {
        true
    }
}

pub(crate) fn build(op: &str, a: &Attrs, cx: &BuildCtx) -> OpResult<Option<Box<dyn Op>>> {
    let act = |k| Ok(Some(Box::new(Activation(k)) as Box<dyn Op>));
    match op {
        "Relu" => act(Kind::Relu),
        "LeakyRelu" => act(Kind::LeakyRelu(a.f("alpha", 0.01) as f64)),
        "Elu" => act(Kind::Elu(a.f("alpha", 1.0) as f64)),
        "HardSigmoid" => act(Kind::HardSigmoid(
            a.f("alpha", 0.2) as f64,
            a.f("beta", 0.5) as f64,
        )),
        "HardSwish" => act(Kind::HardSwish),
        "Sigmoid" => act(Kind::Sigmoid),
        "Tanh" => act(Kind::Tanh),
        "Softplus" => act(Kind::Softplus),
        "Erf" => act(Kind::Erf),
        "Gelu" => match a.s("approximate", "none").as_str() {
            "none" => act(Kind::GeluErf),
            "tanh" => act(Kind::GeluTanh),
            other => bail!("Gelu approximate '{other}' is not an ONNX value"),
        },
        "Clip" => Ok(Some(Box::new(Clip {
            min: a.has("min").then(|| a.f("min", 0.0) as f64),
            max: a.has("max").then(|| a.f("max", 0.0) as f64),
        }))),
        "PRelu" => Ok(Some(Box::new(PRelu))),
        "Softmax" | "LogSoftmax" => {
            let legacy = cx.opset < 13;
            Ok(Some(Box::new(Softmax {
                axis: a.i("axis", if legacy { 1 } else { -1 }),
                log: op == "LogSoftmax",
                legacy,
            })))
        }
        "Dropout" => Ok(Some(Box::new(Dropout {
            ratio: a.f("ratio", 0.5) as f64,
        }))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, random_onnx, single_node};
    use crate::engine::{EngineOptions, GraphModule, Mode};
    use edgeslim_onnx::node::{float, int, string};
    use edgeslim_onnx::Tensor as OnnxTensor;

    fn x() -> candle_core::Tensor {
        random(&[2, 3, 4], 1, -3., 3.)
    }

    #[test]
    fn pointwise_activation_gradients() {
        for (op, attrs, opset) in [
            ("Relu", vec![], 13),
            ("LeakyRelu", vec![float("alpha", 0.1)], 13),
            ("Elu", vec![float("alpha", 0.7)], 13),
            (
                "HardSigmoid",
                vec![float("alpha", 0.25), float("beta", 0.4)],
                13,
            ),
            ("HardSwish", vec![], 14),
            ("Sigmoid", vec![], 13),
            ("Tanh", vec![], 13),
            ("Softplus", vec![], 13),
            ("Erf", vec![], 13),
            ("Gelu", vec![], 20),
            ("Gelu", vec![string("approximate", "tanh")], 20),
            ("Softmax", vec![int("axis", 1)], 13),
            ("Softmax", vec![int("axis", 1)], 11),
            ("LogSoftmax", vec![], 13),
        ] {
            let m = single_node(op, &[("x", &[2, 3, 4])], &[], attrs, 1, opset);
            let r = std::panic::catch_unwind(|| assert_grads(&m, &[("x", x())], Mode::Eval));
            assert!(r.is_ok(), "{op} (opset {opset}) failed its gradient check");
        }
    }

    #[test]
    fn clip_with_inputs_and_attributes() {
        let scalar = |v: f32| OnnxTensor::scalar_f32(v);
        let m = single_node(
            "Clip",
            &[("x", &[2, 3, 4])],
            &[("lo", scalar(-0.5)), ("hi", scalar(1.0))],
            vec![],
            1,
            13,
        );
        assert_grads(&m, &[("x", x())], Mode::Eval);
        let m = single_node(
            "Clip",
            &[("x", &[2, 3, 4])],
            &[],
            vec![float("min", 0.0), float("max", 6.0)],
            1,
            6,
        );
        assert_grads(&m, &[("x", x())], Mode::Eval);
    }

    #[test]
    fn prelu_slope_is_a_weight() {
        let m = single_node(
            "PRelu",
            &[("x", &[2, 3, 4])],
            &[("slope", random_onnx(&[3, 1], 2, 0.1, 0.3))],
            vec![],
            1,
            13,
        );
        let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
        assert_eq!(g.trainable().len(), 1);
        assert_grads(&m, &[("x", x())], Mode::Eval);
    }

    #[test]
    fn dropout_is_identity_in_eval_and_seeded_in_train() {
        let m = single_node(
            "Dropout",
            &[("x", &[4, 50])],
            &[],
            vec![float("ratio", 0.5)],
            1,
            10,
        );
        let g = GraphModule::from_onnx(
            &m,
            &EngineOptions {
                require_weights: false,
                ..Default::default()
            },
        )
        .unwrap();
        let xin = random(&[4, 50], 3, 1., 2.)
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let e = g.forward(&[("x", xin.clone())], Mode::Eval, &[]).unwrap()["y0"].clone();
        let diff = (e - &xin)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        g.set_seed(9);
        let a = g.forward(&[("x", xin.clone())], Mode::Train, &[]).unwrap()["y0"].clone();
        g.set_seed(9);
        let b = g.forward(&[("x", xin.clone())], Mode::Train, &[]).unwrap()["y0"].clone();
        let va = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(va, b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let zeros = va.iter().filter(|v| **v == 0.0).count();
        assert!(
            (60..140).contains(&zeros),
            "{zeros} of 200 dropped at ratio 0.5"
        );
        // Kept values are scaled by 1/(1-ratio).
        let xv = xin.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(va
            .iter()
            .zip(&xv)
            .all(|(y, x)| *y == 0.0 || (y - 2.0 * x).abs() < 1e-6));
        assert_grads(&m, &[("x", random(&[4, 50], 4, -1., 1.))], Mode::Train);
    }
}
