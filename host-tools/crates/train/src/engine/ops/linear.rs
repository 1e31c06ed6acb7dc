//! Gemm and MatMul (numpy semantics: 1-D operands, broadcast batch dimensions).

use super::{bail, broadcast_shape, input, opt_input, Attrs, Op, OpResult, RunCtx};
use candle_core::Tensor;

pub(crate) struct Gemm {
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    pub fn build(a: &Attrs) -> OpResult<Gemm> {
        Ok(Gemm {
            alpha: a.f("alpha", 1.0) as f64,
            beta: a.f("beta", 1.0) as f64,
            trans_a: a.i("transA", 0) != 0,
            trans_b: a.i("transB", 0) != 0,
        })
    }
}

impl Op for Gemm {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        if a.rank() != 2 || b.rank() != 2 {
            bail!(
                "Gemm takes 2-D operands, got {:?} and {:?}",
                a.dims(),
                b.dims()
            );
        }
        // Transposes are stride views: gemm reads them without a copy.
        let a = if self.trans_a { a.t()? } else { a.clone() };
        let b = if self.trans_b { b.t()? } else { b.clone() };
        if a.dim(1)? != b.dim(0)? {
            bail!(
                "Gemm operands {:?} and {:?} do not multiply",
                a.dims(),
                b.dims()
            );
        }
        let mut y = a.matmul(&b)?;
        if self.alpha != 1.0 {
            y = y.affine(self.alpha, 0.0)?;
        }
        if let Some(c) = opt_input(ins, 2) {
            let c = if self.beta != 1.0 {
                c.affine(self.beta, 0.0)?
            } else {
                c.clone()
            };
            y = y.broadcast_add(&c)?;
        }
        Ok(vec![y])
    }
}

pub(crate) struct MatMul;

impl Op for MatMul {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        Ok(vec![matmul_nd(input(ins, 0)?, input(ins, 1)?)?])
    }
}

/// Can candle's CPU matmul read this tensor's batch layout as it is? (Its rule: at most two
/// batch dimensions, laid out as one stride.) The last two dimensions may have any strides.
fn batch_layout_ok(t: &Tensor) -> bool {
    let d = t.dims();
    let s = t.stride();
    match d.len() {
        2 | 3 => true,
        4 => s[0] == s[1] * d[1] || d[0] == 1 || d[1] == 1,
        _ => false,
    }
}

fn ready(t: Tensor) -> OpResult<Tensor> {
    if batch_layout_ok(&t) {
        Ok(t)
    } else {
        Ok(t.contiguous()?)
    }
}

/// ONNX MatMul on tensors of any rank.
pub(crate) fn matmul_nd(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    let (a, squeeze_a) = if a.rank() == 1 {
        (a.unsqueeze(0)?, true)
    } else {
        (a.clone(), false)
    };
    let (b, squeeze_b) = if b.rank() == 1 {
        (b.unsqueeze(1)?, true)
    } else {
        (b.clone(), false)
    };
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k) = (a.dims()[ra - 2], a.dims()[ra - 1]);
    let (k2, n) = (b.dims()[rb - 2], b.dims()[rb - 1]);
    if k != k2 {
        bail!(
            "MatMul operands {:?} and {:?} do not multiply",
            a.dims(),
            b.dims()
        );
    }
    let mut y = if rb == 2 {
        // [..., M, K] @ [K, N]: fold the batch into the rows, one large GEMM (the common
        // linear layer of a transformer).
        let batch = a.dims()[..ra - 2].to_vec();
        let rows = batch.iter().product::<usize>() * m;
        let y = a.reshape((rows, k))?.matmul(&b)?;
        let mut shape = batch;
        shape.extend([m, n]);
        y.reshape(shape)?
    } else {
        let batch = broadcast_shape(&a.dims()[..ra - 2], &b.dims()[..rb - 2])?;
        let mut sa = batch.clone();
        sa.extend([m, k]);
        let mut sb = batch.clone();
        sb.extend([k, n]);
        // Broadcast operands are materialised: candle's matmul backward on zero-stride views
        // gives wrong gradients (caught by the gradient check below).
        let a = if a.dims() != sa.as_slice() {
            a.broadcast_as(sa)?.contiguous()?
        } else {
            a
        };
        let b = if b.dims() != sb.as_slice() {
            b.broadcast_as(sb)?.contiguous()?
        } else {
            b
        };
        if batch.len() > 2 {
            let nb: usize = batch.iter().product();
            let y = a.reshape((nb, m, k))?.matmul(&b.reshape((nb, k, n))?)?;
            let mut shape = batch;
            shape.extend([m, n]);
            y.reshape(shape)?
        } else {
            ready(a)?.matmul(&ready(b)?)?
        }
    };
    if squeeze_b {
        y = y.squeeze(y.rank() - 1)?;
    }
    if squeeze_a {
        y = y.squeeze(y.rank() - if squeeze_b { 1 } else { 2 })?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, random_onnx, single_node};
    use crate::engine::Mode;
    use edgeslim_onnx::node::{float, int};

    #[test]
    fn gemm_gradients_with_transposes_alpha_beta() {
        let m = single_node(
            "Gemm",
            &[("a", &[4, 3])],
            &[
                ("b", random_onnx(&[5, 4], 1, -1., 1.)),
                ("c", random_onnx(&[5], 2, -1., 1.)),
            ],
            vec![
                int("transA", 1),
                int("transB", 1),
                float("alpha", 0.7),
                float("beta", 1.3),
            ],
            1,
            13,
        );
        assert_grads(&m, &[("a", random(&[4, 3], 3, -1., 1.))], Mode::Eval);
    }

    #[test]
    fn matmul_gradients_batched_broadcast_and_vectors() {
        // [2,1,3,4] @ [3,4,5]: batch broadcast to [2,3].
        let m = single_node(
            "MatMul",
            &[("a", &[2, 1, 3, 4]), ("b", &[3, 4, 5])],
            &[],
            vec![],
            1,
            13,
        );
        assert_grads(
            &m,
            &[
                ("a", random(&[2, 1, 3, 4], 4, -1., 1.)),
                ("b", random(&[3, 4, 5], 5, -1., 1.)),
            ],
            Mode::Eval,
        );
        // A linear layer [B, T, D] @ [D, E] with a stored weight.
        let m = single_node(
            "MatMul",
            &[("a", &[2, 3, 4])],
            &[("w", random_onnx(&[4, 6], 6, -1., 1.))],
            vec![],
            1,
            13,
        );
        assert_grads(&m, &[("a", random(&[2, 3, 4], 7, -1., 1.))], Mode::Eval);
        // 1-D operands on either side.
        let m = single_node(
            "MatMul",
            &[("a", &[4]), ("b", &[2, 4, 3])],
            &[],
            vec![],
            1,
            13,
        );
        assert_grads(
            &m,
            &[
                ("a", random(&[4], 8, -1., 1.)),
                ("b", random(&[2, 4, 3], 9, -1., 1.)),
            ],
            Mode::Eval,
        );
        let m = single_node("MatMul", &[("a", &[3, 4]), ("b", &[4])], &[], vec![], 1, 13);
        assert_grads(
            &m,
            &[
                ("a", random(&[3, 4], 10, -1., 1.)),
                ("b", random(&[4], 11, -1., 1.)),
            ],
            Mode::Eval,
        );
        // Rank 5 (folded to 3-D internally).
        let m = single_node(
            "MatMul",
            &[("a", &[2, 2, 2, 3, 4]), ("b", &[2, 2, 2, 4, 2])],
            &[],
            vec![],
            1,
            13,
        );
        assert_grads(
            &m,
            &[
                ("a", random(&[2, 2, 2, 3, 4], 12, -1., 1.)),
                ("b", random(&[2, 2, 2, 4, 2], 13, -1., 1.)),
            ],
            Mode::Eval,
        );
    }
}
