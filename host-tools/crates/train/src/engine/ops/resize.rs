//! Resize (and the older Upsample): nearest and linear, scales or sizes, the ONNX coordinate
//! transformation and nearest-rounding modes.
//!
//! Separable: each resized axis is an `index_select` (nearest) or a weighted sum of two
//! `index_select`s (linear), so gradients come from candle's index_add without a custom op.

use super::{
    bail, floats_of, index_tensor, input, ints_of, norm_axis, opt_input, Attrs, BuildCtx, Op,
    OpResult, RunCtx,
};
use candle_core::Tensor;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Interp {
    Nearest,
    Linear,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rounding {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Opset < 11 and Upsample: truncate when enlarging, ceil when shrinking (as ONNX Runtime).
    Simple,
}

pub(crate) struct Resize {
    interp: Interp,
    coord: Coord,
    rounding: Rounding,
    /// Where the scales are: input 1 (Resize-10, Upsample-9), input 2 (Resize-11+) or the
    /// `scales` attribute (Upsample-7).
    scales_input: usize,
    scales_attr: Option<Vec<f32>>,
    axes: Option<Vec<i64>>,
}

impl Resize {
    pub fn build(a: &Attrs, cx: &BuildCtx) -> OpResult<Resize> {
        let legacy = a.0.op_type == "Upsample" || cx.opset < 11;
        let interp = match a.s("mode", "nearest").as_str() {
            "nearest" => Interp::Nearest,
            "linear" | "bilinear" => Interp::Linear,
            other => bail!("mode '{other}' is not supported (nearest and linear are)"),
        };
        let coord = if legacy {
            Coord::Asymmetric
        } else {
            match a.s("coordinate_transformation_mode", "half_pixel").as_str() {
                "half_pixel" => Coord::HalfPixel,
                "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
                "pytorch_half_pixel" => Coord::PytorchHalfPixel,
                "align_corners" => Coord::AlignCorners,
                "asymmetric" => Coord::Asymmetric,
                "tf_half_pixel_for_nn" => Coord::TfHalfPixelForNn,
                other => bail!("coordinate_transformation_mode '{other}' is not supported"),
            }
        };
        let rounding = if legacy {
            Rounding::Simple
        } else {
            match a.s("nearest_mode", "round_prefer_floor").as_str() {
                "round_prefer_floor" => Rounding::RoundPreferFloor,
                "round_prefer_ceil" => Rounding::RoundPreferCeil,
                "floor" => Rounding::Floor,
                "ceil" => Rounding::Ceil,
                other => bail!("nearest_mode '{other}' is not an ONNX value"),
            }
        };
        if a.i("antialias", 0) != 0 {
            bail!("antialias is not supported");
        }
        if a.s("keep_aspect_ratio_policy", "stretch") != "stretch" {
            bail!("keep_aspect_ratio_policy other than 'stretch' is not supported");
        }
        Ok(Resize {
            interp,
            coord,
            rounding,
            scales_input: if legacy { 1 } else { 2 },
            scales_attr: a.floats("scales"),
            axes: a.ints("axes"),
        })
    }

    fn source_coord(&self, o: usize, scale: f64, len_in: usize, len_out: usize) -> f64 {
        let x = o as f64;
        match self.coord {
            Coord::HalfPixel => (x + 0.5) / scale - 0.5,
            Coord::HalfPixelSymmetric => {
                let adjustment = len_out as f64 / (scale * len_in as f64);
                let center = len_in as f64 / 2.0;
                center * (1.0 - adjustment) + (x + 0.5) / scale - 0.5
            }
            Coord::PytorchHalfPixel => {
                if len_out > 1 {
                    (x + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            Coord::AlignCorners => {
                if len_out == 1 {
                    0.0
                } else {
                    x * (len_in as f64 - 1.0) / (len_out as f64 - 1.0)
                }
            }
            Coord::Asymmetric => x / scale,
            Coord::TfHalfPixelForNn => (x + 0.5) / scale,
        }
    }

    fn round(&self, v: f64, shrinking: bool) -> f64 {
        match self.rounding {
            Rounding::RoundPreferFloor if v.fract() == 0.5 => v.floor(),
            Rounding::RoundPreferCeil if v.fract() == 0.5 => v.ceil(),
            Rounding::RoundPreferFloor | Rounding::RoundPreferCeil => v.round(),
            Rounding::Floor => v.floor(),
            Rounding::Ceil => v.ceil(),
            Rounding::Simple if shrinking => v.ceil(),
            Rounding::Simple => v.trunc(),
        }
    }

    /// Resize one axis of `x` from `len_in` to `len_out` positions.
    fn axis(&self, x: &Tensor, axis: usize, scale: f64, len_out: usize) -> OpResult<Tensor> {
        let len_in = x.dim(axis)?;
        let last = len_in as f64 - 1.0;
        let src: Vec<f64> = (0..len_out)
            .map(|o| self.source_coord(o, scale, len_in, len_out))
            .collect();
        let x = x.contiguous()?;
        match self.interp {
            Interp::Nearest => {
                let idx: Vec<usize> = src
                    .iter()
                    .map(|&v| self.round(v, scale < 1.0).clamp(0.0, last) as usize)
                    .collect();
                Ok(x.index_select(&index_tensor(&idx, x.device())?, axis)?)
            }
            Interp::Linear => {
                let mut i0 = Vec::with_capacity(len_out);
                let mut i1 = Vec::with_capacity(len_out);
                let mut w1 = Vec::with_capacity(len_out);
                for &v in &src {
                    let v = v.clamp(0.0, last);
                    let f = v.floor();
                    i0.push(f as usize);
                    i1.push(((f + 1.0).min(last)) as usize);
                    w1.push(v - f);
                }
                let w0: Vec<f64> = w1.iter().map(|w| 1.0 - w).collect();
                let mut wshape = vec![1; x.rank()];
                wshape[axis] = len_out;
                let weights = |w: Vec<f64>| -> candle_core::Result<Tensor> {
                    Tensor::from_vec(w, wshape.as_slice(), x.device())?.to_dtype(x.dtype())
                };
                let a = x.index_select(&index_tensor(&i0, x.device())?, axis)?;
                let b = x.index_select(&index_tensor(&i1, x.device())?, axis)?;
                Ok((a.broadcast_mul(&weights(w0)?)? + b.broadcast_mul(&weights(w1)?)?)?)
            }
        }
    }
}

impl Op for Resize {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let r = x.rank();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a
                .iter()
                .map(|&v| norm_axis(v, r))
                .collect::<OpResult<_>>()?,
            None => (0..r).collect(),
        };
        let scales: Option<Vec<f64>> = match opt_input(ins, self.scales_input) {
            Some(t) if t.elem_count() > 0 => Some(floats_of(t)?),
            _ => self
                .scales_attr
                .as_ref()
                .map(|s| s.iter().map(|&v| v as f64).collect()),
        };
        let sizes = match opt_input(ins, 3).filter(|_| self.scales_input == 2) {
            Some(t) if t.elem_count() > 0 => Some(ints_of(t)?),
            _ => None,
        };
        // (scale, output length) per resized axis.
        let mut plan = Vec::new();
        match (scales, sizes) {
            (_, Some(sizes)) => {
                if sizes.len() != axes.len() {
                    bail!("sizes {sizes:?} do not fit {} axes", axes.len());
                }
                for (&a, &s) in axes.iter().zip(&sizes) {
                    let len_in = x.dim(a)?;
                    if s <= 0 {
                        bail!("sizes {sizes:?} must be positive");
                    }
                    plan.push((a, s as f64 / len_in as f64, s as usize));
                }
            }
            (Some(scales), None) => {
                if scales.len() != axes.len() {
                    bail!("scales {scales:?} do not fit {} axes", axes.len());
                }
                for (&a, &s) in axes.iter().zip(&scales) {
                    if s <= 0.0 {
                        bail!("scales {scales:?} must be positive");
                    }
                    let len_out = (x.dim(a)? as f64 * s).floor() as usize;
                    plan.push((a, s, len_out));
                }
            }
            (None, None) => bail!("neither scales nor sizes are given"),
        }
        let mut y = x.clone();
        for (a, scale, len_out) in plan {
            if len_out == y.dim(a)? && scale == 1.0 {
                continue;
            }
            if len_out == 0 {
                bail!("resizing axis {a} to length 0");
            }
            y = self.axis(&y, a, scale, len_out)?;
        }
        Ok(vec![y])
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, single_node};
    use crate::engine::Mode;
    use edgeslim_onnx::node::string;
    use edgeslim_onnx::Tensor as OnnxTensor;

    #[test]
    fn resize_gradients_nearest_and_linear() {
        let empty = OnnxTensor::f32(vec![0], vec![]).unwrap();
        let scales = OnnxTensor::f32(vec![4], vec![1., 1., 2., 1.5]).unwrap();
        let sizes = OnnxTensor::i64(vec![4], vec![2, 3, 3, 7]).unwrap();
        for (mode, coord, inits) in [
            (
                "nearest",
                "asymmetric",
                vec![("roi", empty.clone()), ("scales", scales.clone())],
            ),
            (
                "nearest",
                "half_pixel",
                vec![
                    ("roi", empty.clone()),
                    ("scales", empty.clone()),
                    ("sizes", sizes.clone()),
                ],
            ),
            (
                "linear",
                "half_pixel",
                vec![("roi", empty.clone()), ("scales", scales.clone())],
            ),
            (
                "linear",
                "align_corners",
                vec![
                    ("roi", empty.clone()),
                    ("scales", empty.clone()),
                    ("sizes", sizes.clone()),
                ],
            ),
            (
                "linear",
                "pytorch_half_pixel",
                vec![("roi", empty.clone()), ("scales", scales.clone())],
            ),
        ] {
            let m = single_node(
                "Resize",
                &[("x", &[2, 3, 4, 5])],
                &inits,
                vec![
                    string("mode", mode),
                    string("coordinate_transformation_mode", coord),
                ],
                1,
                13,
            );
            let r = std::panic::catch_unwind(|| {
                assert_grads(&m, &[("x", random(&[2, 3, 4, 5], 1, -1., 1.))], Mode::Eval)
            });
            assert!(r.is_ok(), "Resize {mode}/{coord} failed its gradient check");
        }
    }
}
