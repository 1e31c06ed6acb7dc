//! MaxPool and AveragePool over im2col windows (pads, strides, dilations, ceil_mode,
//! count_include_pad), GlobalAveragePool and GlobalMaxPool.

use super::conv::{as_2d, Geometry};
use super::im2col::{im2col, out_len, Window};
use super::{bail, input, Attrs, Op, OpResult, RunCtx};
use candle_core::Tensor;

pub(crate) struct Pool {
    max: bool,
    kernel: Vec<usize>,
    geo: Geometry,
    ceil: bool,
    count_include_pad: bool,
}

impl Pool {
    pub fn build(a: &Attrs) -> OpResult<Pool> {
        let max = a.0.op_type == "MaxPool";
        let kernel = match a.ints("kernel_shape") {
            Some(k) if (1..=2).contains(&k.len()) && k.iter().all(|&v| v > 0) => {
                k.iter().map(|&v| v as usize).collect()
            }
            Some(k) => bail!("kernel_shape {k:?}: only 1-D and 2-D pools are supported"),
            None => bail!("kernel_shape is required"),
        };
        if max && a.wants_output(1) {
            bail!("the Indices output of MaxPool is not supported");
        }
        Ok(Pool {
            max,
            kernel,
            geo: Geometry::build(a)?,
            ceil: a.i("ceil_mode", 0) != 0,
            count_include_pad: a.i("count_include_pad", 0) != 0,
        })
    }
}

/// For each output position along one axis, how many window taps fall in `[lo, hi)`.
fn taps_inside(
    o: usize,
    k: usize,
    s: usize,
    d: usize,
    pad: usize,
    lo: isize,
    hi: isize,
) -> Vec<f64> {
    (0..o)
        .map(|p| {
            (0..k)
                .filter(|&i| {
                    let y = (p * s + i * d) as isize - pad as isize;
                    y >= lo && y < hi
                })
                .count() as f64
        })
        .collect()
}

impl Op for Pool {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let (x, one_d) = as_2d(input(ins, 0)?, "input")?;
        if one_d != (self.kernel.len() == 1) {
            bail!(
                "kernel_shape {:?} does not fit input {:?}",
                self.kernel,
                x.dims()
            );
        }
        let (n, c, h, w) = x.dims4()?;
        let spatial: Vec<usize> = if one_d { vec![w] } else { vec![h, w] };
        let ax = self.geo.resolve(&spatial, &self.kernel)?;
        let (kh, kw) = if one_d {
            (1, self.kernel[0])
        } else {
            (self.kernel[0], self.kernel[1])
        };
        let fit = |len, k, i: usize| {
            out_len(
                len,
                k,
                ax.stride[i],
                ax.dil[i],
                ax.begin[i],
                ax.end[i],
                self.ceil,
            )
            .ok_or_else(|| {
                super::OpError(format!(
                    "window {:?} does not fit input {:?}",
                    self.kernel,
                    x.dims()
                ))
            })
        };
        let oh = fit(h, kh, 0)?;
        let ow = fit(w, kw, 1)?;
        let win = Window {
            n,
            c,
            h,
            w,
            kh,
            kw,
            sh: ax.stride[0],
            sw: ax.stride[1],
            dh: ax.dil[0],
            dw: ax.dil[1],
            pt: ax.begin[0],
            pl: ax.begin[1],
            oh,
            ow,
            pad_value: if self.max { f64::NEG_INFINITY } else { 0.0 },
        };
        let kk = kh * kw;
        let cols = im2col(&x, win)?.reshape((c, kk, n * oh * ow))?;
        let y = if self.max {
            cols.max_keepdim(1)?.reshape((c, n, oh * ow))?
        } else {
            // Divide each window by the taps it really has: inside the image, or inside the
            // padded image with count_include_pad (never the ceil-mode overhang).
            let (b, e) = (ax.begin, ax.end);
            let (lo_h, hi_h, lo_w, hi_w) = if self.count_include_pad {
                (
                    -(b[0] as isize),
                    (h + e[0]) as isize,
                    -(b[1] as isize),
                    (w + e[1]) as isize,
                )
            } else {
                (0, h as isize, 0, w as isize)
            };
            let cy = taps_inside(oh, kh, win.sh, win.dh, win.pt, lo_h, hi_h);
            let cx = taps_inside(ow, kw, win.sw, win.dw, win.pl, lo_w, hi_w);
            let inv: Vec<f64> = cy
                .iter()
                .flat_map(|a| cx.iter().map(move |b| 1.0 / (a * b).max(1.0)))
                .collect();
            let inv = Tensor::from_vec(inv, oh * ow, x.device())?.to_dtype(x.dtype())?;
            cols.sum_keepdim(1)?
                .reshape((c, n, oh * ow))?
                .broadcast_mul(&inv)?
        };
        let y = y.reshape((c, n, oh, ow))?.transpose(0, 1)?.contiguous()?;
        Ok(vec![if one_d { y.squeeze(2)? } else { y }])
    }
}

pub(crate) struct GlobalPool {
    pub max: bool,
}

impl Op for GlobalPool {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        if x.rank() < 3 {
            bail!("input of shape {:?} has no spatial axes", x.dims());
        }
        let dims: Vec<usize> = (2..x.rank()).collect();
        let y = if self.max {
            let mut y = x.clone();
            for &d in &dims {
                y = y.max_keepdim(d)?;
            }
            y
        } else {
            x.mean_keepdim(dims.as_slice())?
        };
        Ok(vec![y])
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, single_node};
    use crate::engine::Mode;
    use edgeslim_onnx::node::{int, ints};

    #[test]
    fn pool_gradients() {
        let x = || random(&[2, 3, 7, 6], 1, -1., 1.);
        for (op, attrs) in [
            (
                "MaxPool",
                vec![
                    ints("kernel_shape", &[3, 3]),
                    ints("strides", &[2, 2]),
                    ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            (
                "MaxPool",
                vec![
                    ints("kernel_shape", &[2, 2]),
                    ints("strides", &[2, 2]),
                    int("ceil_mode", 1),
                ],
            ),
            (
                "AveragePool",
                vec![
                    ints("kernel_shape", &[3, 2]),
                    ints("strides", &[2, 1]),
                    ints("pads", &[1, 0, 1, 1]),
                ],
            ),
            (
                "AveragePool",
                vec![
                    ints("kernel_shape", &[3, 3]),
                    ints("strides", &[2, 2]),
                    ints("pads", &[1, 1, 1, 1]),
                    int("count_include_pad", 1),
                ],
            ),
            (
                "AveragePool",
                vec![
                    ints("kernel_shape", &[2, 2]),
                    ints("strides", &[2, 2]),
                    int("ceil_mode", 1),
                ],
            ),
            ("GlobalAveragePool", vec![]),
            ("GlobalMaxPool", vec![]),
        ] {
            let m = single_node(op, &[("x", &[2, 3, 7, 6])], &[], attrs, 1, 13);
            let r = std::panic::catch_unwind(|| assert_grads(&m, &[("x", x())], Mode::Eval));
            assert!(r.is_ok(), "{op} failed its gradient check");
        }
    }
}
