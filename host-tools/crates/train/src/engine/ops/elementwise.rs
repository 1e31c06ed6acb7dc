//! Element-wise arithmetic, math functions, comparisons and Where, with numpy broadcasting.
//! The same ops serve float activations and the int64 tensors of shape computations.

use super::{as_float, broadcast_shape, input, is_float, Attrs, BuildCtx, Op, OpResult, RunCtx};
use candle_core::{DType, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
}

/// Make two operands the same type: an int operand of a float op becomes float (Pow with an
/// integer exponent, a Cast left out by an exporter).
fn unify(a: &Tensor, b: &Tensor, dtype: DType) -> OpResult<(Tensor, Tensor)> {
    if a.dtype() == b.dtype() {
        return Ok((a.clone(), b.clone()));
    }
    if is_float(a) || is_float(b) {
        let f = if is_float(a) { a.dtype() } else { b.dtype() };
        let f = if f == dtype { dtype } else { f };
        return Ok((as_float(a, f)?, as_float(b, f)?));
    }
    Ok((a.to_dtype(DType::I64)?, b.to_dtype(DType::I64)?))
}

/// The exponent of Pow when it is one fixed number (no gradient to it).
fn constant_exponent(e: &Tensor) -> OpResult<Option<f64>> {
    if e.elem_count() != 1 || e.track_op() {
        return Ok(None);
    }
    Ok(Some(super::scalar_of(e)?))
}

fn pow(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    if let Some(e) = constant_exponent(b)? {
        // Shape of the result still follows broadcasting with a (rank ≥ 0) exponent.
        let shape = broadcast_shape(a.dims(), b.dims())?;
        let a = if a.dims() != shape.as_slice() {
            a.broadcast_as(shape)?.contiguous()?
        } else {
            a.clone()
        };
        return Ok(match e {
            1.0 => a,
            2.0 => a.sqr()?,
            0.5 => a.sqrt()?,
            _ => a.powf(e)?,
        });
    }
    // Tensor exponent: exp(b·ln a), defined for a > 0 (what a learned exponent needs).
    Ok(a.broadcast_pow(b)?)
}

struct Binary(Bin);

fn apply(op: Bin, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    Ok(match op {
        Bin::Add => a.broadcast_add(b)?,
        Bin::Sub => a.broadcast_sub(b)?,
        Bin::Mul => a.broadcast_mul(b)?,
        Bin::Div => a.broadcast_div(b)?,
        Bin::Pow => pow(a, b)?,
        Bin::Max => a.broadcast_maximum(b)?,
        Bin::Min => a.broadcast_minimum(b)?,
        Bin::Equal => a.broadcast_eq(b)?,
        Bin::Less => a.broadcast_lt(b)?,
        Bin::LessOrEqual => a.broadcast_le(b)?,
        Bin::Greater => a.broadcast_gt(b)?,
        Bin::GreaterOrEqual => a.broadcast_ge(b)?,
        Bin::And => a.ne(0u8)?.broadcast_mul(&b.ne(0u8)?)?,
        Bin::Or => a.ne(0u8)?.broadcast_maximum(&b.ne(0u8)?)?,
    })
}

/// `x op c` for a fixed scalar `c` as one fused affine pass (HardSwish's /6, attention's
/// scale, an exported GELU's /√2 and +1) instead of a broadcast binary op.
fn scalar_affine(op: Bin, a: &Tensor, b: &Tensor) -> OpResult<Option<Tensor>> {
    if !is_float(a) || b.elem_count() != 1 || b.track_op() || b.rank() > a.rank() {
        return Ok(None);
    }
    let c = super::scalar_of(b)?;
    Ok(match op {
        Bin::Add => Some(a.affine(1.0, c)?),
        Bin::Sub => Some(a.affine(1.0, -c)?),
        Bin::Mul => Some(a.affine(c, 0.0)?),
        Bin::Div if c != 0.0 => Some(a.affine(1.0 / c, 0.0)?),
        _ => None,
    })
}

impl Op for Binary {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let (a, b) = unify(input(ins, 0)?, input(ins, 1)?, cx.dtype)?;
        if let Some(y) = scalar_affine(self.0, &a, &b)? {
            return Ok(vec![y]);
        }
        if matches!(self.0, Bin::Add | Bin::Mul) {
            if let Some(y) = scalar_affine(self.0, &b, &a)? {
                return Ok(vec![y]);
            }
        }
        Ok(vec![apply(self.0, &a, &b)?])
    }
}

/// Sum, Max, Min, Mean over any number of inputs.
struct Variadic {
    op: Bin,
    mean: bool,
}

impl Op for Variadic {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let mut acc = input(ins, 0)?.clone();
        for k in 1..ins.len() {
            let (a, b) = unify(&acc, input(ins, k)?, cx.dtype)?;
            acc = apply(self.op, &a, &b)?;
        }
        if self.mean {
            acc = acc.affine(1.0 / ins.len() as f64, 0.0)?;
        }
        Ok(vec![acc])
    }
}

#[derive(Debug, Clone, Copy)]
enum Un {
    Sqrt,
    Exp,
    Log,
    Neg,
    Abs,
    Reciprocal,
    Floor,
    Ceil,
    Not,
}

struct Unary(Un);

impl Op for Unary {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let y = match self.0 {
            Un::Sqrt => x.sqrt()?,
            Un::Exp => x.exp()?,
            Un::Log => x.log()?,
            Un::Neg => x.neg()?,
            Un::Abs => x.abs()?,
            Un::Reciprocal => x.recip()?,
            // Integers are already whole; floats are rounded without a gradient.
            Un::Floor if is_float(x) => x.detach().floor()?,
            Un::Ceil if is_float(x) => x.detach().ceil()?,
            Un::Floor | Un::Ceil => x.clone(),
            Un::Not => x.eq(0u8)?,
        };
        Ok(vec![y])
    }
}

struct Where;

impl Op for Where {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let c = input(ins, 0)?;
        let (t, f) = unify(input(ins, 1)?, input(ins, 2)?, cx.dtype)?;
        let shape = broadcast_shape(&broadcast_shape(c.dims(), t.dims())?, f.dims())?;
        let c = c.ne(0u8)?;
        let c = if c.dims() != shape.as_slice() {
            c.broadcast_as(shape.as_slice())?.contiguous()?
        } else {
            c
        };
        let t = if t.dims() != shape.as_slice() {
            t.broadcast_as(shape.as_slice())?
        } else {
            t
        };
        let f = if f.dims() != shape.as_slice() {
            f.broadcast_as(shape.as_slice())?
        } else {
            f
        };
        Ok(vec![c.where_cond(&t, &f)?])
    }
}

pub(crate) fn build(op: &str, _a: &Attrs, _cx: &BuildCtx) -> OpResult<Option<Box<dyn Op>>> {
    let bin = |b| Ok(Some(Box::new(Binary(b)) as Box<dyn Op>));
    let un = |u| Ok(Some(Box::new(Unary(u)) as Box<dyn Op>));
    let var = |op, mean| Ok(Some(Box::new(Variadic { op, mean }) as Box<dyn Op>));
    match op {
        "Add" => bin(Bin::Add),
        "Sub" => bin(Bin::Sub),
        "Mul" => bin(Bin::Mul),
        "Div" => bin(Bin::Div),
        "Pow" => bin(Bin::Pow),
        "Equal" => bin(Bin::Equal),
        "Less" => bin(Bin::Less),
        "LessOrEqual" => bin(Bin::LessOrEqual),
        "Greater" => bin(Bin::Greater),
        "GreaterOrEqual" => bin(Bin::GreaterOrEqual),
        "And" => bin(Bin::And),
        "Or" => bin(Bin::Or),
        "Sum" => var(Bin::Add, false),
        "Mean" => var(Bin::Add, true),
        "Max" => var(Bin::Max, false),
        "Min" => var(Bin::Min, false),
        "Sqrt" => un(Un::Sqrt),
        "Exp" => un(Un::Exp),
        "Log" => un(Un::Log),
        "Neg" => un(Un::Neg),
        "Abs" => un(Un::Abs),
        "Reciprocal" => un(Un::Reciprocal),
        "Floor" => un(Un::Floor),
        "Ceil" => un(Un::Ceil),
        "Not" => un(Un::Not),
        "Where" => Ok(Some(Box::new(Where))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, random_onnx, single_node};
    use crate::engine::{EngineOptions, GraphModule, Mode};
    use edgeslim_onnx::Tensor as OnnxTensor;

    #[test]
    fn binary_gradients_with_broadcasting() {
        for op in ["Add", "Sub", "Mul", "Div", "Max", "Min"] {
            let m = single_node(op, &[("a", &[2, 3, 4]), ("b", &[3, 1])], &[], vec![], 1, 13);
            let r = std::panic::catch_unwind(|| {
                assert_grads(
                    &m,
                    &[
                        ("a", random(&[2, 3, 4], 1, 0.5, 2.)),
                        ("b", random(&[3, 1], 2, 0.5, 2.)),
                    ],
                    Mode::Eval,
                )
            });
            assert!(r.is_ok(), "{op} failed its gradient check");
        }
    }

    #[test]
    fn pow_with_constant_and_tensor_exponents() {
        for e in [2.0f32, 3.0, 0.5, -1.5] {
            let m = single_node(
                "Pow",
                &[("a", &[2, 3])],
                &[("e", OnnxTensor::scalar_f32(e))],
                vec![],
                1,
                13,
            );
            assert_grads(&m, &[("a", random(&[2, 3], 3, 0.5, 2.))], Mode::Eval);
        }
        let m = single_node("Pow", &[("a", &[2, 3]), ("e", &[3])], &[], vec![], 1, 13);
        assert_grads(
            &m,
            &[
                ("a", random(&[2, 3], 4, 0.5, 2.)),
                ("e", random(&[3], 5, -1., 2.)),
            ],
            Mode::Eval,
        );
        // An integer exponent (int64 constant) is accepted.
        let m = single_node(
            "Pow",
            &[("a", &[2, 3])],
            &[("e", OnnxTensor::i64(vec![], vec![2]).unwrap())],
            vec![],
            1,
            13,
        );
        assert_grads(&m, &[("a", random(&[2, 3], 6, -2., 2.))], Mode::Eval);
    }

    #[test]
    fn unary_gradients() {
        for op in ["Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal"] {
            let m = single_node(op, &[("a", &[2, 3])], &[], vec![], 1, 13);
            let r = std::panic::catch_unwind(|| {
                assert_grads(&m, &[("a", random(&[2, 3], 7, 0.5, 2.))], Mode::Eval)
            });
            assert!(r.is_ok(), "{op} failed its gradient check");
        }
    }

    #[test]
    fn multi_element_constants_in_add_are_weights_scalars_are_not() {
        let m = single_node(
            "Add",
            &[("a", &[2, 3])],
            &[("bias", random_onnx(&[3], 1, -1., 1.))],
            vec![],
            1,
            13,
        );
        let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
        assert_eq!(g.trainable().len(), 1);
        assert_grads(&m, &[("a", random(&[2, 3], 8, -1., 1.))], Mode::Eval);
        let s = single_node(
            "Mul",
            &[("a", &[2, 3])],
            &[("six", OnnxTensor::scalar_f32(6.0))],
            vec![],
            1,
            13,
        );
        let e = GraphModule::from_onnx(&s, &EngineOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no float weight"), "{e}");
    }

    #[test]
    fn where_and_comparisons() {
        use edgeslim_onnx::builder::GraphBuilder;
        let mut b = GraphBuilder::new("where", 13);
        let a = b.input("a", &[2, 3]);
        let c = b.input("c", &[2, 3]);
        let zero = b.init("zero", &OnnxTensor::scalar_f32(0.0));
        let gt = b.node("Greater", &[&a, &zero], vec![]);
        let w = b.node("Where", &[&gt, &a, &c], vec![]);
        b.output(&w);
        let m = b.finish();
        assert_grads(
            &m,
            &[
                ("a", random(&[2, 3], 9, -1., 1.)),
                ("c", random(&[2, 3], 10, -1., 1.)),
            ],
            Mode::Eval,
        );
    }
}
