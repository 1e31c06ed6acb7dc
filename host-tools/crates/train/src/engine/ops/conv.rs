//! Conv and ConvTranspose (1-D and 2-D, groups, depthwise, per-axis strides, dilations and
//! asymmetric pads, auto_pad) as im2col/col2im plus one matmul.
//!
//! The weight is an ordinary input: a kernel computed in the graph (a Siamese tracker's
//! template features used as a depthwise correlation kernel) gets gradients like a stored one.

use super::im2col::{col2im, im2col, out_len, Window};
use super::{bail, input, opt_input, Attrs, Op, OpResult, RunCtx};
use candle_core::Tensor;

#[derive(Debug, Clone, Copy, PartialEq)]
enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// Geometry attributes shared by Conv, ConvTranspose and the pools.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    auto_pad: AutoPad,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
    dilations: Option<Vec<i64>>,
}

/// Per-axis values for a 2-D window (1-D convolutions use a unit leading axis).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Axes2 {
    pub stride: [usize; 2],
    pub dil: [usize; 2],
    pub begin: [usize; 2],
    pub end: [usize; 2],
}

impl Geometry {
    pub fn build(a: &Attrs) -> OpResult<Geometry> {
        let auto_pad = match a.s("auto_pad", "NOTSET").as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => bail!("auto_pad '{other}' is not an ONNX value"),
        };
        Ok(Geometry {
            auto_pad,
            pads: a.ints("pads"),
            strides: a.ints("strides"),
            dilations: a.ints("dilations"),
        })
    }

    /// Per-axis list of `rank` values, or `default`; values are checked to be ≥ `min`.
    fn list(
        v: &Option<Vec<i64>>,
        rank: usize,
        default: i64,
        min: i64,
        what: &str,
    ) -> OpResult<Vec<usize>> {
        match v {
            None => Ok(vec![default as usize; rank]),
            Some(v) if v.len() == rank && v.iter().all(|&x| x >= min) => {
                Ok(v.iter().map(|&x| x as usize).collect())
            }
            Some(v) => bail!("{what} {v:?} do not fit a {rank}-D window"),
        }
    }

    /// Resolve strides, dilations and pads for a forward window over `spatial` input sizes
    /// with kernel sizes `kernel` (1 or 2 axes), lifted to 2 axes.
    pub fn resolve(&self, spatial: &[usize], kernel: &[usize]) -> OpResult<Axes2> {
        let r = spatial.len();
        let strides = Self::list(&self.strides, r, 1, 1, "strides")?;
        let dil = Self::list(&self.dilations, r, 1, 1, "dilations")?;
        let (mut begin, mut end) = (vec![0; r], vec![0; r]);
        match self.auto_pad {
            AutoPad::NotSet => {
                let p = Self::list(&self.pads, 2 * r, 0, 0, "pads")?;
                begin.copy_from_slice(&p[..r]);
                end.copy_from_slice(&p[r..]);
            }
            AutoPad::Valid => {}
            AutoPad::SameUpper | AutoPad::SameLower => {
                for i in 0..r {
                    let out = spatial[i].div_ceil(strides[i]);
                    let span = (kernel[i] - 1) * dil[i] + 1;
                    let total = ((out - 1) * strides[i] + span).saturating_sub(spatial[i]);
                    let small = total / 2;
                    if self.auto_pad == AutoPad::SameUpper {
                        (begin[i], end[i]) = (small, total - small);
                    } else {
                        (begin[i], end[i]) = (total - small, small);
                    }
                }
            }
        }
        Ok(lift(&strides, &dil, &begin, &end))
    }
}

fn lift(strides: &[usize], dil: &[usize], begin: &[usize], end: &[usize]) -> Axes2 {
    if strides.len() == 1 {
        Axes2 {
            stride: [1, strides[0]],
            dil: [1, dil[0]],
            begin: [0, begin[0]],
            end: [0, end[0]],
        }
    } else {
        Axes2 {
            stride: [strides[0], strides[1]],
            dil: [dil[0], dil[1]],
            begin: [begin[0], begin[1]],
            end: [end[0], end[1]],
        }
    }
}

/// View a 1-D (`[N, C, L]`) tensor as 2-D (`[N, C, 1, L]`); 2-D stays as is.
pub(crate) fn as_2d(t: &Tensor, what: &str) -> OpResult<(Tensor, bool)> {
    match t.rank() {
        3 => Ok((t.unsqueeze(2)?, true)),
        4 => Ok((t.clone(), false)),
        r => bail!("{what} of rank {r}: only 1-D and 2-D windows are supported"),
    }
}

pub(crate) struct Conv {
    geo: Geometry,
    group: usize,
}

impl Conv {
    pub fn build(a: &Attrs) -> OpResult<Conv> {
        let group = a.i("group", 1);
        if group < 1 {
            bail!("group {group} must be at least 1");
        }
        Ok(Conv {
            geo: Geometry::build(a)?,
            group: group as usize,
        })
    }
}

impl Op for Conv {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let (x, one_d) = as_2d(input(ins, 0)?, "input")?;
        let (w, _) = as_2d(input(ins, 1)?, "weight")?;
        let (n, c, h, wd) = x.dims4()?;
        let (o, cg, kh, kw) = w.dims4()?;
        let g = self.group;
        if cg * g != c || o % g != 0 {
            bail!(
                "weight {:?} with group {g} does not fit input {:?}",
                w.dims(),
                x.dims()
            );
        }
        let spatial: Vec<usize> = if one_d { vec![wd] } else { vec![h, wd] };
        let kernel: Vec<usize> = if one_d { vec![kw] } else { vec![kh, kw] };
        let ax = self.geo.resolve(&spatial, &kernel)?;
        let too_small = || window_error(x.dims(), w.dims());
        let oh = out_len(
            h,
            kh,
            ax.stride[0],
            ax.dil[0],
            ax.begin[0],
            ax.end[0],
            false,
        )
        .ok_or_else(too_small)?;
        let ow = out_len(
            wd,
            kw,
            ax.stride[1],
            ax.dil[1],
            ax.begin[1],
            ax.end[1],
            false,
        )
        .ok_or_else(too_small)?;
        let win = Window {
            n,
            c,
            h,
            w: wd,
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
            pad_value: 0.0,
        };
        let pointwise = kh == 1 && kw == 1 && win.sh == 1 && win.sw == 1 && ax.begin == [0, 0];
        let cols = if pointwise && n == 1 {
            // Already in column layout: no copy.
            x.reshape((c, h * wd))?
        } else {
            im2col(&x, win)?
        };
        let k = cg * kh * kw;
        let y = if g == 1 {
            w.reshape((o, k))?.matmul(&cols)?
        } else {
            let wg = w.reshape((g, o / g, k))?;
            let cg3 = cols.reshape((g, k, n * oh * ow))?;
            wg.matmul(&cg3)?.reshape((o, n * oh * ow))?
        };
        let y = y.reshape((o, n, oh, ow))?.transpose(0, 1)?;
        let y = match opt_input(ins, 2) {
            Some(b) => y.broadcast_add(&b.reshape((1, o, 1, 1))?)?,
            None => y.contiguous()?,
        };
        Ok(vec![if one_d { y.squeeze(2)? } else { y }])
    }
}

fn window_error(x: &[usize], w: &[usize]) -> super::OpError {
    super::OpError(format!(
        "kernel {w:?} does not fit input {x:?} with these pads, strides and dilations"
    ))
}

pub(crate) struct ConvTranspose {
    geo: Geometry,
    group: usize,
    output_padding: Option<Vec<i64>>,
    output_shape: Option<Vec<i64>>,
}

impl ConvTranspose {
    pub fn build(a: &Attrs) -> OpResult<ConvTranspose> {
        let group = a.i("group", 1);
        if group < 1 {
            bail!("group {group} must be at least 1");
        }
        Ok(ConvTranspose {
            geo: Geometry::build(a)?,
            group: group as usize,
            output_padding: a.ints("output_padding"),
            output_shape: a.ints("output_shape"),
        })
    }

    /// Pads (begin, end) and output sizes per axis, following the ONNX ConvTranspose rules.
    fn geometry(&self, spatial: &[usize], kernel: &[usize]) -> OpResult<(Axes2, Vec<usize>)> {
        let r = spatial.len();
        let strides = Geometry::list(&self.geo.strides, r, 1, 1, "strides")?;
        let dil = Geometry::list(&self.geo.dilations, r, 1, 1, "dilations")?;
        let op = Geometry::list(&self.output_padding, r, 0, 0, "output_padding")?;
        let (mut begin, mut end) = (vec![0; r], vec![0; r]);
        let mut out = vec![0; r];
        let full: Vec<usize> = (0..r)
            .map(|i| strides[i] * (spatial[i] - 1) + op[i] + (kernel[i] - 1) * dil[i] + 1)
            .collect();
        let target: Option<Vec<usize>> = match (&self.output_shape, self.geo.auto_pad) {
            (Some(s), _) => {
                // output_shape may list only the spatial sizes, or N and C too.
                let s: Vec<usize> = s[s.len().saturating_sub(r)..]
                    .iter()
                    .map(|&v| v.max(0) as usize)
                    .collect();
                Some(s)
            }
            (None, AutoPad::SameUpper | AutoPad::SameLower) => {
                Some((0..r).map(|i| spatial[i] * strides[i]).collect())
            }
            _ => None,
        };
        match target {
            Some(t) => {
                for i in 0..r {
                    if t[i] > full[i] {
                        bail!("output_shape {t:?} is larger than the convolution can produce");
                    }
                    let total = full[i] - t[i];
                    if self.geo.auto_pad == AutoPad::SameUpper {
                        (begin[i], end[i]) = (total / 2, total - total / 2);
                    } else {
                        (begin[i], end[i]) = (total - total / 2, total / 2);
                    }
                    out[i] = t[i];
                }
            }
            None => {
                if self.geo.auto_pad != AutoPad::Valid {
                    let p = Geometry::list(&self.geo.pads, 2 * r, 0, 0, "pads")?;
                    begin.copy_from_slice(&p[..r]);
                    end.copy_from_slice(&p[r..]);
                }
                for i in 0..r {
                    out[i] = full[i]
                        .checked_sub(begin[i] + end[i])
                        .filter(|&v| v > 0)
                        .ok_or_else(|| super::OpError("pads remove the whole output".into()))?;
                }
            }
        }
        Ok((lift(&strides, &dil, &begin, &end), out))
    }
}

impl Op for ConvTranspose {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let (x, one_d) = as_2d(input(ins, 0)?, "input")?;
        let (w, _) = as_2d(input(ins, 1)?, "weight")?;
        let (n, cin, h, wd) = x.dims4()?;
        let (wc, cog, kh, kw) = w.dims4()?;
        let g = self.group;
        if wc != cin || cin % g != 0 {
            bail!(
                "weight {:?} with group {g} does not fit input {:?}",
                w.dims(),
                x.dims()
            );
        }
        let cout = cog * g;
        let spatial: Vec<usize> = if one_d { vec![wd] } else { vec![h, wd] };
        let kernel: Vec<usize> = if one_d { vec![kw] } else { vec![kh, kw] };
        let (ax, out) = self.geometry(&spatial, &kernel)?;
        let (oh, ow) = if one_d { (1, out[0]) } else { (out[0], out[1]) };
        // Columns of the output image: W^T x per group.
        let x2 = x.transpose(0, 1)?.reshape((g, cin / g, n * h * wd))?;
        let w2 = w.reshape((g, cin / g, cog * kh * kw))?.transpose(1, 2)?;
        let cols = w2.matmul(&x2)?.reshape((cout * kh * kw, n * h * wd))?;
        let win = Window {
            n,
            c: cout,
            h: oh,
            w: ow,
            kh,
            kw,
            sh: ax.stride[0],
            sw: ax.stride[1],
            dh: ax.dil[0],
            dw: ax.dil[1],
            pt: ax.begin[0],
            pl: ax.begin[1],
            oh: h,
            ow: wd,
            pad_value: 0.0,
        };
        let y = col2im(&cols, win)?;
        let y = match opt_input(ins, 2) {
            Some(b) => y.broadcast_add(&b.reshape((1, cout, 1, 1))?)?,
            None => y,
        };
        Ok(vec![if one_d { y.squeeze(2)? } else { y }])
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, random_onnx, single_node};
    use crate::engine::Mode;
    use edgeslim_onnx::node::{int, ints, string};

    #[test]
    fn conv_gradients_with_strides_pads_dilations_and_groups() {
        let m = single_node(
            "Conv",
            &[("x", &[2, 4, 7, 6])],
            &[
                ("w", random_onnx(&[6, 2, 3, 2], 1, -1., 1.)),
                ("b", random_onnx(&[6], 2, -1., 1.)),
            ],
            vec![
                ints("strides", &[2, 1]),
                ints("pads", &[1, 0, 2, 1]),
                ints("dilations", &[1, 2]),
                int("group", 2),
            ],
            1,
            13,
        );
        assert_grads(&m, &[("x", random(&[2, 4, 7, 6], 3, -1., 1.))], Mode::Eval);
    }

    #[test]
    fn depthwise_and_same_upper_conv_gradients() {
        let m = single_node(
            "Conv",
            &[("x", &[2, 3, 5, 5])],
            &[("w", random_onnx(&[3, 1, 3, 3], 4, -1., 1.))],
            vec![
                int("group", 3),
                string("auto_pad", "SAME_UPPER"),
                ints("strides", &[2, 2]),
            ],
            1,
            13,
        );
        assert_grads(&m, &[("x", random(&[2, 3, 5, 5], 5, -1., 1.))], Mode::Eval);
    }

    #[test]
    fn conv1d_gradients() {
        let m = single_node(
            "Conv",
            &[("x", &[2, 3, 9])],
            &[("w", random_onnx(&[4, 3, 3], 6, -1., 1.))],
            vec![ints("pads", &[1, 1]), ints("strides", &[2])],
            1,
            13,
        );
        assert_grads(&m, &[("x", random(&[2, 3, 9], 7, -1., 1.))], Mode::Eval);
    }

    #[test]
    fn dynamic_kernel_gets_gradients_too() {
        // Depthwise cross-correlation: the kernel is a graph input (template features).
        let m = single_node(
            "Conv",
            &[("x", &[1, 4, 6, 6]), ("k", &[4, 1, 3, 3])],
            &[],
            vec![int("group", 4)],
            1,
            13,
        );
        let r = assert_grads(
            &m,
            &[
                ("x", random(&[1, 4, 6, 6], 8, -1., 1.)),
                ("k", random(&[4, 1, 3, 3], 9, -1., 1.)),
            ],
            Mode::Eval,
        );
        assert!(r.checked >= 48, "{r:?}");
    }

    #[test]
    fn conv_transpose_gradients() {
        let m = single_node(
            "ConvTranspose",
            &[("x", &[2, 4, 3, 4])],
            &[
                ("w", random_onnx(&[4, 3, 3, 2], 10, -1., 1.)),
                ("b", random_onnx(&[3], 11, -1., 1.)),
            ],
            vec![
                ints("strides", &[2, 2]),
                ints("pads", &[1, 0, 0, 1]),
                ints("output_padding", &[1, 0]),
            ],
            1,
            13,
        );
        assert_grads(&m, &[("x", random(&[2, 4, 3, 4], 12, -1., 1.))], Mode::Eval);
        let g = single_node(
            "ConvTranspose",
            &[("x", &[1, 4, 3, 3])],
            &[("w", random_onnx(&[4, 2, 2, 2], 13, -1., 1.))],
            vec![ints("strides", &[2, 2]), int("group", 2)],
            1,
            13,
        );
        assert_grads(&g, &[("x", random(&[1, 4, 3, 3], 14, -1., 1.))], Mode::Eval);
    }

    #[test]
    fn conv_matches_a_direct_sum() {
        use crate::engine::{EngineOptions, GraphModule};
        // 1x1x3x3 input, 2x2 kernel of ones, pad 1 at the top only: y[0][0] sums row 0, cols 0..1.
        let m = single_node(
            "Conv",
            &[("x", &[1, 1, 3, 3])],
            &[(
                "w",
                edgeslim_onnx::Tensor::f32(vec![1, 1, 2, 2], vec![1.0; 4]).unwrap(),
            )],
            vec![ints("pads", &[1, 0, 0, 0])],
            1,
            13,
        );
        let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
        let x = candle_core::Tensor::arange(0f32, 9., &candle_core::Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let y = g.forward(&[("x", x)], Mode::Eval, &[]).unwrap()["y0"].clone();
        assert_eq!(y.dims(), &[1, 1, 3, 2]);
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, vec![1., 3., 8., 12., 20., 24.]);
    }
}
