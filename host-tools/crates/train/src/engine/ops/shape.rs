//! Shape and layout ops: Reshape, Flatten, Transpose, Concat, Slice, Split, Squeeze,
//! Unsqueeze, Gather, Expand, Tile, Pad, Shape, Size, ConstantOfShape, Range, Cast, Identity.
//!
//! Shape-computing subgraphs (Shape → Slice → Concat → Reshape, as PP-OCR has) run on small
//! int64 tensors; the executor evaluates them once per input shape, not once per step.

use super::{
    bail, broadcast_shape, index_tensor, input, ints_of, norm_axis, opt_input, scalar_of, Attrs,
    BuildCtx, Op, OpError, OpResult, RunCtx,
};
use candle_core::{DType, Tensor};

/// The three kinds of element the engine keeps: the engine float, int64 and bool (u8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Elem {
    Float,
    Int,
    Bool,
}

impl Elem {
    /// From an ONNX `TensorProto.DataType` code.
    pub fn from_onnx(code: i64) -> OpResult<Elem> {
        Ok(match code {
            1 | 10 | 11 | 16 => Elem::Float,
            2..=7 | 12 | 13 => Elem::Int,
            9 => Elem::Bool,
            other => bail!("element type {other} is not supported"),
        })
    }

    pub fn dtype(self, float: DType) -> DType {
        match self {
            Elem::Float => float,
            Elem::Int => DType::I64,
            Elem::Bool => DType::U8,
        }
    }
}

fn shape_list(t: &Tensor) -> OpResult<Vec<i64>> {
    ints_of(t)
}

fn to_usize(v: &[i64], what: &str) -> OpResult<Vec<usize>> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| OpError(format!("{what} {v:?} has a negative value")))
        })
        .collect()
}

struct Reshape {
    allowzero: bool,
}

impl Op for Reshape {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let spec = shape_list(input(ins, 1)?)?;
        let mut dims = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                0 if !self.allowzero => dims.push(*x.dims().get(i).ok_or_else(|| {
                    OpError(format!(
                        "shape {spec:?}: 0 at {i} copies a dimension the input {:?} lacks",
                        x.dims()
                    ))
                })?),
                -1 if infer.is_none() => {
                    infer = Some(i);
                    dims.push(1);
                }
                d if d >= 0 => dims.push(d as usize),
                _ => bail!("shape {spec:?} is not a valid Reshape target"),
            }
        }
        if let Some(i) = infer {
            let known: usize = dims.iter().product();
            if known == 0 || x.elem_count() % known != 0 {
                bail!("cannot reshape {:?} to {spec:?}", x.dims());
            }
            dims[i] = x.elem_count() / known;
        }
        if dims.iter().product::<usize>() != x.elem_count() {
            bail!("cannot reshape {:?} to {spec:?}", x.dims());
        }
        Ok(vec![x.reshape(dims)?])
    }
}

struct Flatten {
    axis: i64,
}

impl Op for Flatten {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let r = x.rank() as i64;
        let axis = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if !(0..=r).contains(&axis) {
            bail!("axis {} is out of range for rank {r}", self.axis);
        }
        let rows: usize = x.dims()[..axis as usize].iter().product();
        let cols: usize = x.dims()[axis as usize..].iter().product();
        Ok(vec![x.reshape((rows, cols))?])
    }
}

struct Transpose {
    perm: Option<Vec<i64>>,
}

impl Op for Transpose {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let perm: Vec<usize> = match &self.perm {
            Some(p) => p
                .iter()
                .map(|&a| norm_axis(a, x.rank()))
                .collect::<OpResult<_>>()?,
            None => (0..x.rank()).rev().collect(),
        };
        if perm.len() != x.rank() {
            bail!("perm {perm:?} does not fit rank {}", x.rank());
        }
        // A stride view; the next op that needs memory order copies once.
        Ok(vec![x.permute(perm)?])
    }
}

struct Concat {
    axis: i64,
}

impl Op for Concat {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let parts: Vec<&Tensor> = ins.iter().flatten().collect();
        let first = parts.first().ok_or_else(|| OpError("no inputs".into()))?;
        let axis = norm_axis(self.axis, first.rank())?;
        // Shape computations may mix int widths (we keep all ints as int64).
        let dtype = first.dtype();
        let parts: Vec<Tensor> = parts
            .iter()
            .map(|t| {
                if t.dtype() == dtype {
                    Ok((*t).clone())
                } else {
                    t.to_dtype(dtype)
                }
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(vec![Tensor::cat(&parts, axis)?])
    }
}

/// ONNX clamping of one slice axis; returns the positions taken.
fn slice_positions(d: usize, start: i64, end: i64, step: i64) -> OpResult<Vec<usize>> {
    if step == 0 {
        bail!("slice step 0");
    }
    let d = d as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = if step > 0 {
        (fix(start).clamp(0, d), fix(end).clamp(0, d))
    } else {
        (fix(start).clamp(0, d - 1), fix(end).clamp(-1, d - 1))
    };
    let mut out = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        out.push(i as usize);
        i += step;
    }
    Ok(out)
}

/// starts, ends and optional axes.
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

struct Slice {
    /// Opset < 10: starts/ends/axes as attributes.
    attrs: Option<SliceAttrs>,
}

impl Op for Slice {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                ints_of(input(ins, 1)?)?,
                ints_of(input(ins, 2)?)?,
                opt_input(ins, 3).map(ints_of).transpose()?,
                opt_input(ins, 4).map(ints_of).transpose()?,
            ),
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            bail!("starts, ends, axes and steps differ in length");
        }
        let mut y = x.clone();
        for k in 0..starts.len() {
            let axis = norm_axis(axes[k], x.rank())?;
            let d = y.dim(axis)?;
            let pos = slice_positions(d, starts[k], ends[k], steps[k])?;
            if steps[k] == 1 {
                let start = pos.first().copied().unwrap_or(0);
                y = y.narrow(axis, start, pos.len())?;
            } else {
                y = y
                    .contiguous()?
                    .index_select(&index_tensor(&pos, x.device())?, axis)?;
            }
        }
        Ok(vec![y])
    }
}

struct Split {
    axis: i64,
    split_attr: Option<Vec<i64>>,
    outputs: usize,
}

impl Op for Split {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let axis = norm_axis(self.axis, x.rank())?;
        let d = x.dim(axis)?;
        let sizes: Vec<usize> = match opt_input(ins, 1).map(ints_of).transpose()? {
            Some(s) => to_usize(&s, "split")?,
            None => match &self.split_attr {
                Some(s) => to_usize(s, "split")?,
                None => {
                    // Equal parts; the last is smaller when the axis does not divide.
                    let n = self.outputs.max(1);
                    let chunk = d.div_ceil(n);
                    (0..n)
                        .map(|i| chunk.min(d.saturating_sub(i * chunk)))
                        .collect()
                }
            },
        };
        if sizes.iter().sum::<usize>() != d {
            bail!("split sizes {sizes:?} do not add up to axis length {d}");
        }
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for s in sizes {
            out.push(x.narrow(axis, start, s)?);
            start += s;
        }
        Ok(out)
    }
}

struct Squeeze {
    axes: Option<Vec<i64>>,
}

impl Op for Squeeze {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let axes = match opt_input(ins, 1) {
            Some(t) => Some(ints_of(t)?),
            None => self.axes.clone(),
        };
        let drop: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&v| norm_axis(v, x.rank()))
                .collect::<OpResult<_>>()?,
            None => (0..x.rank()).filter(|&i| x.dims()[i] == 1).collect(),
        };
        for &a in &drop {
            if x.dims()[a] != 1 {
                bail!("cannot squeeze axis {a} of {:?}", x.dims());
            }
        }
        let dims: Vec<usize> = (0..x.rank())
            .filter(|i| !drop.contains(i))
            .map(|i| x.dims()[i])
            .collect();
        Ok(vec![x.reshape(dims)?])
    }
}

struct Unsqueeze {
    axes: Option<Vec<i64>>,
}

impl Op for Unsqueeze {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let axes = match opt_input(ins, 1) {
            Some(t) => ints_of(t)?,
            None => self
                .axes
                .clone()
                .ok_or_else(|| OpError("axes are required".into()))?,
        };
        let r = x.rank() + axes.len();
        let mut axes: Vec<usize> = axes
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<OpResult<_>>()?;
        axes.sort_unstable();
        let mut dims = Vec::with_capacity(r);
        let mut src = x.dims().iter();
        for i in 0..r {
            if axes.contains(&i) {
                dims.push(1);
            } else {
                dims.push(*src.next().ok_or_else(|| OpError("repeated axes".into()))?);
            }
        }
        Ok(vec![x.reshape(dims)?])
    }
}

struct Gather {
    axis: i64,
}

impl Op for Gather {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let idx_t = input(ins, 1)?;
        let axis = norm_axis(self.axis, x.rank())?;
        let d = x.dim(axis)? as i64;
        let idx: Vec<usize> = ints_of(idx_t)?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + d } else { i };
                if (0..d).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(OpError(format!(
                        "index {i} is out of range for axis length {d}"
                    )))
                }
            })
            .collect::<OpResult<_>>()?;
        // One index or a run of consecutive ones (the class token, q/k/v out of a fused
        // projection) is a view; anything else a copy.
        let consecutive = idx.windows(2).all(|w| w[1] == w[0] + 1);
        let picked = if consecutive && !idx.is_empty() {
            x.narrow(axis, idx[0], idx.len())?
        } else {
            x.contiguous()?
                .index_select(&index_tensor(&idx, x.device())?, axis)?
        };
        if idx_t.rank() == 0 {
            return Ok(vec![picked.squeeze(axis)?]);
        }
        if idx_t.rank() == 1 {
            return Ok(vec![picked]);
        }
        let mut dims = x.dims()[..axis].to_vec();
        dims.extend_from_slice(idx_t.dims());
        dims.extend_from_slice(&x.dims()[axis + 1..]);
        Ok(vec![picked.reshape(dims)?])
    }
}

struct Expand;

impl Op for Expand {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let target = to_usize(&shape_list(input(ins, 1)?)?, "shape")?;
        let out = broadcast_shape(x.dims(), &target)?;
        Ok(vec![if out == x.dims() {
            x.clone()
        } else {
            x.broadcast_as(out)?
        }])
    }
}

struct Tile;

impl Op for Tile {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let reps = to_usize(&ints_of(input(ins, 1)?)?, "repeats")?;
        if reps.len() != x.rank() {
            bail!("repeats {reps:?} do not fit rank {}", x.rank());
        }
        let mut y = x.clone();
        for (axis, &r) in reps.iter().enumerate() {
            if r != 1 {
                let copies = vec![y.clone(); r];
                y = Tensor::cat(&copies, axis)?;
            }
        }
        Ok(vec![y])
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PadMode {
    Constant,
    Edge,
    Reflect,
}

struct Pad {
    mode: PadMode,
    /// Opset < 11: pads and value as attributes.
    pads_attr: Option<Vec<i64>>,
    value_attr: f64,
}

impl Op for Pad {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let pads = match opt_input(ins, 1) {
            Some(t) => ints_of(t)?,
            None => self
                .pads_attr
                .clone()
                .ok_or_else(|| OpError("pads are required".into()))?,
        };
        let value = match opt_input(ins, 2) {
            Some(t) if t.elem_count() > 0 => scalar_of(t)?,
            _ => self.value_attr,
        };
        let axes: Vec<usize> = match opt_input(ins, 3) {
            Some(t) => ints_of(t)?
                .iter()
                .map(|&a| norm_axis(a, x.rank()))
                .collect::<OpResult<_>>()?,
            None => (0..x.rank()).collect(),
        };
        if pads.len() != 2 * axes.len() {
            bail!("pads {pads:?} do not fit {} axes", axes.len());
        }
        let mut y = x.clone();
        for (k, &axis) in axes.iter().enumerate() {
            let (b, e) = (pads[k], pads[k + axes.len()]);
            // Negative pads crop.
            let d = y.dim(axis)? as i64;
            let (cb, ce) = ((-b).max(0), (-e).max(0));
            if cb + ce > 0 {
                if cb + ce > d {
                    bail!("pads {pads:?} crop more than axis {axis} holds");
                }
                y = y.narrow(axis, cb as usize, (d - cb - ce) as usize)?;
            }
            let (b, e) = (b.max(0) as usize, e.max(0) as usize);
            if b + e == 0 {
                continue;
            }
            y = match self.mode {
                PadMode::Constant if value == 0.0 => y.pad_with_zeros(axis, b, e)?,
                PadMode::Constant => {
                    let part = |n: usize| -> candle_core::Result<Tensor> {
                        let mut dims = y.dims().to_vec();
                        dims[axis] = n;
                        Tensor::full(value, dims, y.device())?.to_dtype(y.dtype())
                    };
                    Tensor::cat(&[part(b)?, y.clone(), part(e)?], axis)?
                }
                PadMode::Edge => y.pad_with_same(axis, b, e)?,
                PadMode::Reflect => {
                    let n = y.dim(axis)? as i64;
                    if n < 2 || b as i64 >= n || e as i64 >= n {
                        bail!("reflect padding of {b}/{e} needs a longer axis than {n}");
                    }
                    let pos: Vec<usize> = (-(b as i64)..n + e as i64)
                        .map(|i| {
                            let i = i.abs();
                            (if i >= n { 2 * (n - 1) - i } else { i }) as usize
                        })
                        .collect();
                    y.contiguous()?
                        .index_select(&index_tensor(&pos, y.device())?, axis)?
                }
            };
        }
        Ok(vec![y])
    }
}

struct ShapeOf {
    start: i64,
    end: Option<i64>,
}

impl Op for ShapeOf {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let r = x.rank() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        let dims: Vec<i64> = x.dims()[s..e.max(s)].iter().map(|&d| d as i64).collect();
        let n = dims.len();
        Ok(vec![Tensor::from_vec(dims, n, x.device())?])
    }
}

struct Size;

impl Op for Size {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        Ok(vec![Tensor::new(x.elem_count() as i64, x.device())?])
    }
}

struct ConstantOfShape {
    value: f64,
    elem: Elem,
}

impl Op for ConstantOfShape {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let dims = to_usize(&ints_of(input(ins, 0)?)?, "shape")?;
        let dev = candle_core::Device::Cpu;
        let t = Tensor::full(self.value, dims, &dev)?.to_dtype(self.elem.dtype(cx.dtype))?;
        Ok(vec![t])
    }
}

struct Range;

impl Op for Range {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let start = input(ins, 0)?;
        let (s, l, d) = (
            scalar_of(start)?,
            scalar_of(input(ins, 1)?)?,
            scalar_of(input(ins, 2)?)?,
        );
        if d == 0.0 {
            bail!("Range with delta 0");
        }
        let n = ((l - s) / d).ceil().max(0.0) as usize;
        let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
        let t = Tensor::from_vec(v, n, start.device())?;
        let dtype = if start.dtype().is_float() {
            cx.dtype
        } else {
            DType::I64
        };
        Ok(vec![t.to_dtype(dtype)?])
    }
}

struct Cast {
    to: Elem,
}

impl Op for Cast {
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let y = match self.to {
            Elem::Bool => x.ne(0u8)?,
            e => {
                let d = e.dtype(cx.dtype);
                if x.dtype() == d {
                    x.clone()
                } else {
                    x.to_dtype(d)?
                }
            }
        };
        Ok(vec![y])
    }
}

struct Identity;

impl Op for Identity {
    fn run(&self, _cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>> {
        Ok(vec![input(ins, 0)?.clone()])
    }
}

/// The value attribute of ConstantOfShape (a one-element tensor; default float 0).
fn fill_value(a: &Attrs) -> OpResult<(f64, Elem)> {
    let Some(t) = edgeslim_onnx::node::attr(a.0, "value").and_then(|v| v.t.as_ref()) else {
        return Ok((0.0, Elem::Float));
    };
    let t = edgeslim_onnx::Tensor::from_proto(t).map_err(|e| OpError(e.to_string()))?;
    let v = t.to_f32_vec();
    let elem = Elem::from_onnx(protobuf::Enum::value(&t.data.data_type()) as i64)?;
    let value = match (&t.data, v.first()) {
        (edgeslim_onnx::TensorData::I64(x), _) => x.first().copied().unwrap_or(0) as f64,
        (_, Some(&f)) => f as f64,
        _ => 0.0,
    };
    Ok((value, elem))
}

pub(crate) fn build(op: &str, a: &Attrs, cx: &BuildCtx) -> OpResult<Option<Box<dyn Op>>> {
    let b: Box<dyn Op> = match op {
        "Reshape" => Box::new(Reshape {
            allowzero: a.i("allowzero", 0) != 0,
        }),
        "Flatten" => Box::new(Flatten {
            axis: a.i("axis", 1),
        }),
        "Transpose" => Box::new(Transpose {
            perm: a.ints("perm"),
        }),
        "Concat" => Box::new(Concat {
            axis: a.i("axis", 0),
        }),
        "Slice" => Box::new(Slice {
            attrs: if cx.opset < 10 {
                Some((
                    a.ints("starts")
                        .ok_or_else(|| OpError("starts are required".into()))?,
                    a.ints("ends")
                        .ok_or_else(|| OpError("ends are required".into()))?,
                    a.ints("axes"),
                ))
            } else {
                None
            },
        }),
        "Split" => Box::new(Split {
            axis: a.i("axis", 0),
            split_attr: a.ints("split"),
            outputs: match a.i("num_outputs", 0) {
                n if n > 0 => n as usize,
                _ => a.0.output.len(),
            },
        }),
        "Squeeze" => Box::new(Squeeze {
            axes: a.ints("axes"),
        }),
        "Unsqueeze" => Box::new(Unsqueeze {
            axes: a.ints("axes"),
        }),
        "Gather" => Box::new(Gather {
            axis: a.i("axis", 0),
        }),
        "Expand" => Box::new(Expand),
        "Tile" => Box::new(Tile),
        "Pad" => Box::new(Pad {
            mode: match a.s("mode", "constant").as_str() {
                "constant" => PadMode::Constant,
                "edge" => PadMode::Edge,
                "reflect" => PadMode::Reflect,
                other => bail!("pad mode '{other}' is not supported"),
            },
            pads_attr: a.ints("pads"),
            value_attr: a.f("value", 0.0) as f64,
        }),
        "Shape" => Box::new(ShapeOf {
            start: a.i("start", 0),
            end: a.has("end").then(|| a.i("end", 0)),
        }),
        "Size" => Box::new(Size),
        "ConstantOfShape" => {
            let (value, elem) = fill_value(a)?;
            Box::new(ConstantOfShape { value, elem })
        }
        "Range" => Box::new(Range),
        "Cast" => Box::new(Cast {
            to: Elem::from_onnx(a.i("to", 1))?,
        }),
        "Identity" => Box::new(Identity),
        _ => return Ok(None),
    };
    Ok(Some(b))
}

#[cfg(test)]
mod tests {
    use crate::engine::gradcheck::{assert_grads, random, single_node};
    use crate::engine::{EngineOptions, GraphModule, Mode};
    use edgeslim_onnx::builder::GraphBuilder;
    use edgeslim_onnx::node::{float, int, ints, string};
    use edgeslim_onnx::Tensor as OnnxTensor;

    fn i64s(v: &[i64]) -> OnnxTensor {
        OnnxTensor::i64(vec![v.len()], v.to_vec()).unwrap()
    }

    fn check(
        op: &str,
        x: &[usize],
        inits: &[(&str, OnnxTensor)],
        attrs: Vec<onnx_protobuf::AttributeProto>,
        outputs: usize,
        opset: i64,
    ) {
        let m = single_node(op, &[("x", x)], inits, attrs, outputs, opset);
        let r = std::panic::catch_unwind(|| {
            assert_grads(&m, &[("x", random(x, 1, -1., 1.))], Mode::Eval)
        });
        assert!(r.is_ok(), "{op} failed its gradient check");
    }

    #[test]
    fn layout_op_gradients() {
        check(
            "Reshape",
            &[2, 3, 4],
            &[("s", i64s(&[0, -1, 2]))],
            vec![],
            1,
            13,
        );
        check("Flatten", &[2, 3, 4], &[], vec![int("axis", 2)], 1, 13);
        check(
            "Transpose",
            &[2, 3, 4],
            &[],
            vec![ints("perm", &[2, 0, 1])],
            1,
            13,
        );
        check(
            "Slice",
            &[4, 6],
            &[
                ("s", i64s(&[1, -1])),
                ("e", i64s(&[4, -7])),
                ("a", i64s(&[0, 1])),
                ("st", i64s(&[2, -2])),
            ],
            vec![],
            1,
            13,
        );
        check(
            "Slice",
            &[4, 6],
            &[],
            vec![
                ints("starts", &[1]),
                ints("ends", &[100]),
                ints("axes", &[1]),
            ],
            1,
            9,
        );
        check(
            "Split",
            &[2, 7],
            &[("sp", i64s(&[3, 4]))],
            vec![int("axis", 1)],
            2,
            13,
        );
        check("Split", &[6, 2], &[], vec![], 3, 11);
        check("Squeeze", &[2, 1, 3], &[("a", i64s(&[1]))], vec![], 1, 13);
        check("Squeeze", &[2, 1, 3], &[], vec![ints("axes", &[1])], 1, 11);
        check(
            "Unsqueeze",
            &[2, 3],
            &[("a", i64s(&[0, -1]))],
            vec![],
            1,
            13,
        );
        check("Unsqueeze", &[2, 3], &[], vec![ints("axes", &[1])], 1, 11);
        check(
            "Gather",
            &[3, 4, 2],
            &[("i", OnnxTensor::i64(vec![], vec![0]).unwrap())],
            vec![int("axis", 1)],
            1,
            13,
        );
        check(
            "Gather",
            &[3, 4, 2],
            &[("i", OnnxTensor::i64(vec![2, 2], vec![0, -1, 2, 2]).unwrap())],
            vec![int("axis", 1)],
            1,
            13,
        );
        check("Expand", &[3, 1], &[("s", i64s(&[2, 3, 4]))], vec![], 1, 13);
        check("Tile", &[2, 3], &[("r", i64s(&[2, 3]))], vec![], 1, 13);
        check(
            "Pad",
            &[2, 3, 4],
            &[
                ("p", i64s(&[0, 1, -1, 0, 2, 1])),
                ("v", OnnxTensor::scalar_f32(0.5)),
            ],
            vec![],
            1,
            13,
        );
        check(
            "Pad",
            &[2, 3, 4],
            &[("p", i64s(&[0, 2, 1, 0, 1, 2]))],
            vec![string("mode", "reflect")],
            1,
            13,
        );
        check(
            "Pad",
            &[2, 3, 4],
            &[("p", i64s(&[0, 2, 1, 0, 1, 2]))],
            vec![string("mode", "edge")],
            1,
            13,
        );
        check(
            "Pad",
            &[2, 3],
            &[],
            vec![ints("pads", &[1, 0, 0, 2]), float("value", 1.5)],
            1,
            2,
        );
    }

    #[test]
    fn concat_with_a_class_token_weight() {
        // A class token [1, 1, D] expanded to the batch and concatenated before the patches.
        let mut b = GraphBuilder::new("cls", 13);
        let x = b.input("x", &[2, 3, 4]);
        let cls = b.init(
            "cls_token",
            &crate::engine::gradcheck::random_onnx(&[1, 1, 4], 3, -1., 1.),
        );
        let shape = b.init("shape", &i64s(&[2, 1, 4]));
        let e = b.node("Expand", &[&cls, &shape], vec![]);
        let c = b.node("Concat", &[&e, &x], vec![int("axis", 1)]);
        b.output(&c);
        let m = b.finish();
        let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
        assert_eq!(g.trainable()[0].0, "cls_token");
        assert_grads(&m, &[("x", random(&[2, 3, 4], 4, -1., 1.))], Mode::Eval);
    }

    #[test]
    fn shape_subgraphs_follow_the_input_shape() {
        // x -> Shape -> Slice[0:1] -> Concat([-1]) -> Reshape(x): flattens per sample, for any
        // batch size; evaluated once per input shape.
        let mut b = GraphBuilder::new("shape", 13);
        let x = b.input_dims(
            "x",
            onnx_protobuf::tensor_proto::DataType::FLOAT,
            &[edgeslim_onnx::builder::D::Sym("N"), 3.into(), 2.into()],
        );
        let w = b.init(
            "w",
            &crate::engine::gradcheck::random_onnx(&[6, 2], 5, -1., 1.),
        );
        let s = b.node("Shape", &[&x], vec![]);
        let (st, en) = (b.init("st", &i64s(&[0])), b.init("en", &i64s(&[1])));
        let n = b.node("Slice", &[&s, &st, &en], vec![]);
        let m1 = b.init("m1", &i64s(&[-1]));
        let target = b.node("Concat", &[&n, &m1], vec![int("axis", 0)]);
        let r = b.node("Reshape", &[&x, &target], vec![]);
        let y = b.node("MatMul", &[&r, &w], vec![]);
        b.output(&y);
        let m = b.finish();
        let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
        for n in [1usize, 4, 1, 4] {
            let x = random(&[n, 3, 2], 6, -1., 1.)
                .to_dtype(candle_core::DType::F32)
                .unwrap();
            let out = g.forward(&[("x", x)], Mode::Train, &[]).unwrap()[&y].clone();
            assert_eq!(out.dims(), &[n, 2]);
        }
    }
}
