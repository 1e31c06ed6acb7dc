//! ReduceMean/Sum/Max/Min/SumSquare/L2 (axes as attribute or input, keepdims) and ArgMax.

use super::{input, ints_of, norm_axis, opt_input, Attrs, BuildCtx, Op, OpResult, RunCtx};
use candle_core::{DType, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Mean,
    Sum,
    Max,
    Min,
    SumSquare,
    L2,
}

struct Reduce {
    kind: Kind,
    /// Axes from the attribute (older opsets); newer ones pass them as input 1.
    axes: Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

/// Drop reduced (now size-1) axes from the shape when keepdims is 0.
fn squeeze_axes(y: Tensor, axes: &[usize]) -> OpResult<Tensor> {
    let dims: Vec<usize> = y
        .dims()
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    Ok(y.reshape(dims)?)
}

impl Op for Reduce {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let axes = match opt_input(ins, 1) {
            Some(t) => ints_of(t)?,
            None => self.axes.clone().unwrap_or_default(),
        };
        if axes.is_empty() && self.noop_with_empty_axes {
            return Ok(vec![x.clone()]);
        }
        let mut axes: Vec<usize> = if axes.is_empty() {
            (0..x.rank()).collect()
        } else {
            axes.iter()
                .map(|&a| norm_axis(a, x.rank()))
                .collect::<OpResult<_>>()?
        };
        axes.sort_unstable();
        axes.dedup();
        let y = match self.kind {
            Kind::Mean => x.mean_keepdim(axes.as_slice())?,
            Kind::Sum => x.sum_keepdim(axes.as_slice())?,
            Kind::SumSquare => x.sqr()?.sum_keepdim(axes.as_slice())?,
            Kind::L2 => x.sqr()?.sum_keepdim(axes.as_slice())?.sqrt()?,
            Kind::Max | Kind::Min => {
                let mut y = x.clone();
                for &a in &axes {
                    y = if self.kind == Kind::Max {
                        y.max_keepdim(a)?
                    } else {
                        y.min_keepdim(a)?
                    };
                }
                y
            }
        };
        Ok(vec![if self.keepdims {
            y
        } else {
            squeeze_axes(y, &axes)?
        }])
    }
}

struct ArgMax {
    axis: i64,
    keepdims: bool,
}

impl Op for ArgMax {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let axis = norm_axis(self.axis, x.rank())?;
        let y = x.argmax_keepdim(axis)?.to_dtype(DType::I64)?;
        Ok(vec![if self.keepdims {
            y
        } else {
            squeeze_axes(y, &[axis])?
        }])
    }
}

pub(crate) fn build(op: &str, a: &Attrs, _cx: &BuildCtx) -> OpResult<Option<Box<dyn Op>>> {
    let kind = match op {
        "ReduceMean" => Kind::Mean,
        "ReduceSum" => Kind::Sum,
        "ReduceMax" => Kind::Max,
        "ReduceMin" => Kind::Min,
        "ReduceSumSquare" => Kind::SumSquare,
        "ReduceL2" => Kind::L2,
        "ArgMax" => {
            return Ok(Some(Box::new(ArgMax {
                axis: a.i("axis", 0),
                keepdims: a.i("keepdims", 1) != 0,
            })))
        }
        _ => return Ok(None),
    };
    Ok(Some(Box::new(Reduce {
        kind,
        axes: a.ints("axes"),
        keepdims: a.i("keepdims", 1) != 0,
        noop_with_empty_axes: a.i("noop_with_empty_axes", 0) != 0,
    })))
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, single_node};
    use crate::engine::Mode;
    use edgeslim_onnx::node::{int, ints};
    use edgeslim_onnx::Tensor as OnnxTensor;

    #[test]
    fn reduce_gradients_with_attribute_and_input_axes() {
        for (op, opset) in [
            ("ReduceMean", 13),
            ("ReduceSum", 11),
            ("ReduceMax", 13),
            ("ReduceMin", 13),
            ("ReduceSumSquare", 13),
            ("ReduceL2", 13),
        ] {
            for keep in [0, 1] {
                let m = single_node(
                    op,
                    &[("x", &[2, 3, 4])],
                    &[],
                    vec![ints("axes", &[1, -1]), int("keepdims", keep)],
                    1,
                    opset,
                );
                let r = std::panic::catch_unwind(|| {
                    assert_grads(&m, &[("x", random(&[2, 3, 4], 1, 0.5, 2.))], Mode::Eval)
                });
                assert!(r.is_ok(), "{op} keepdims={keep} failed");
            }
        }
        // Axes as an input (ReduceSum-13, ReduceMean-18).
        for (op, opset) in [("ReduceSum", 13), ("ReduceMean", 18)] {
            let m = single_node(
                op,
                &[("x", &[2, 3, 4])],
                &[("axes", OnnxTensor::i64(vec![1], vec![2]).unwrap())],
                vec![int("keepdims", 0)],
                1,
                opset,
            );
            assert_grads(&m, &[("x", random(&[2, 3, 4], 2, -1., 1.))], Mode::Eval);
        }
    }
}
