//! A tiled executor for fully convolutional models: the image is cut into horizontal strips,
//! each strip is run with a halo of extra rows on its own core, and the strips' outputs are
//! stitched into exactly the tensor the whole image gives.
//!
//! Why: tract spreads one inference over threads only inside its larger matrix products, so
//! a detector or a backbone on a 4-core board uses about one and a half cores. Strips are
//! independent inferences, one per core.
//!
//! Exactness: every output row depends on a band of input rows (its receptive field). A strip
//! is run on a window that extends `halo` rows beyond the rows it contributes, so every row it
//! contributes sees the same input values, padding and sampling grid as in the whole image:
//! - the halo is derived from the graph (kernel extents, dilations, paddings and strides of
//!   every Conv, ConvTranspose, pooling and Resize, accumulated along the paths to the
//!   outputs, in input rows, rounded up);
//! - window starts are multiples of the graph's total stride, so strided convolutions,
//!   poolings and 2× up-samplings sample the same grid in the strip as in the whole image;
//! - all windows have one height, so one plan serves every strip.
//!
//! The test suite compares tiled and whole outputs bit for bit.
//!
//! Models with an op that mixes all rows (global pooling, a squeeze-excite gate, Reshape,
//! MatMul over space, ...) are refused with the node that mixes them.

use crate::error::{Result, RuntimeError};
use crate::model::{decode_proto, LoadOptions, LoadedModel, TypedOnnx};
use crate::shapes::InputShape;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Element-wise ops whose output row r depends only on row r of their inputs.
const ROWWISE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Elu",
    "Selu",
    "Gelu",
    "Erf",
    "Exp",
    "Log",
    "Sqrt",
    "Abs",
    "Neg",
    "Reciprocal",
    "Identity",
    "Dropout",
    "Cast",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Pow",
    "Sum",
    "Mean",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Not",
    "Equal",
    "Less",
    "Greater",
    "Where",
];

/// How a model is cut into strips.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TileSpec {
    pub tiles: usize,
    /// Input rows beyond a strip's own rows that its outputs depend on.
    pub halo_rows: usize,
    /// Window starts and cut points are multiples of this (the graph's total stride).
    pub align_rows: usize,
    /// The height every strip is run at.
    pub window_rows: usize,
    /// Per strip: the first input row of its window, and the input rows it contributes.
    pub windows: Vec<TileWindow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TileWindow {
    pub start: usize,
    pub rows: (usize, usize),
}

/// Why a model cannot be tiled: the node that mixes rows, or a shape that does not scale.
fn refuse(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::Data {
        path: path.into(),
        reason: format!("cannot run in strips: {reason}"),
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn attr_ints<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a [i64]> {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.as_slice())
}

/// How many rows from a window's edge of a sliding op's output are wrong, when `e` rows from
/// the edge of its input are: the rows whose kernel reaches into the wrong input rows or the
/// window's artificial padding. `None` if the op has no kernel height.
fn sliding_reach(n: &pb::NodeProto, weight_dims: Option<&[usize]>, e: usize) -> Option<usize> {
    // The kernel's height: from the attribute, else from a constant weight.
    let kernel = attr_ints(n, "kernel_shape")
        .and_then(|k| k.first())
        .map(|&k| k as usize)
        .or_else(|| weight_dims.and_then(|d| d.get(2)).copied())?;
    let first = |name: &str, default: i64| {
        attr_ints(n, name)
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(default)
            .max(0) as usize
    };
    let (dil, stride) = (first("dilations", 1), first("strides", 1).max(1));
    let extent = dil * kernel.saturating_sub(1);
    if n.op_type == "ConvTranspose" {
        // Input row i spreads over output rows [i·s − p, i·s − p + extent].
        return Some(e * stride + extent + 1);
    }
    let pads = attr_ints(n, "pads").unwrap_or(&[]);
    let pad_top = pads.first().copied().unwrap_or(0).max(0) as usize;
    let pad_bottom = pads.get(pads.len() / 2).copied().unwrap_or(0).max(0) as usize;
    let same = n
        .attribute
        .iter()
        .any(|a| a.name == "auto_pad" && a.s.starts_with(b"SAME"));
    // How far an output row's inputs reach beyond its own position, on either side.
    let side = if same {
        extent
    } else {
        pad_top.max(pad_bottom).max(extent.saturating_sub(pad_top))
    };
    // With a stride, the output size's rounding can add one more row at the bottom edge.
    Some((e + side).div_ceil(stride) + usize::from(stride > 1))
}

/// The halo (input rows) and alignment of a fully convolutional graph, or why it is not one.
pub fn analyze(
    path: &Path,
    proto: &pb::ModelProto,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<(usize, usize)> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| refuse(path, "no graph".into()))?;
    let inits: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut constants: HashSet<String> = inits.keys().map(|s| s.to_string()).collect();
    let input = graph
        .input
        .iter()
        .find(|i| !constants.contains(&i.name))
        .ok_or_else(|| refuse(path, "no input".into()))?;
    let in_shape = shapes
        .get(&input.name)
        .ok_or_else(|| refuse(path, format!("no shape for input '{}'", input.name)))?;
    if in_shape.len() != 4 {
        return Err(refuse(path, format!("input '{}' is not NCHW", input.name)));
    }
    let h = in_shape[2];
    // Per spatial tensor: input rows per tensor row (as a reduced fraction) and the error
    // reach from a window edge, in input rows.
    let mut reach: HashMap<String, usize> = HashMap::new();
    reach.insert(input.name.clone(), 0);
    let mut align = 1usize;
    let rows_of = |t: &str| shapes.get(t).filter(|s| s.len() == 4).map(|s| s[2]);
    let stride_px = |t: &str| -> Option<f64> { rows_of(t).map(|r| h as f64 / r as f64) };
    for (i, n) in graph.node.iter().enumerate() {
        let name = if n.name.is_empty() {
            n.output.first().cloned().unwrap_or_else(|| format!("#{i}"))
        } else {
            n.name.clone()
        };
        if n.op_type == "Constant" {
            constants.extend(n.output.iter().cloned());
            continue;
        }
        let spatial_in: Vec<&String> = n
            .input
            .iter()
            .filter(|x| !x.is_empty() && reach.contains_key(*x))
            .collect();
        if spatial_in.is_empty() {
            // Shape arithmetic on constants only: a constant too.
            constants.extend(n.output.iter().cloned());
            continue;
        }
        let mixes = |why: &str| refuse(path, format!("{} '{name}' {why}", n.op_type));
        let in_reach = spatial_in.iter().map(|x| reach[*x]).max().unwrap_or(0);
        let in_stride =
            stride_px(spatial_in[0]).ok_or_else(|| mixes("reads a tensor that is not NCHW"))?;
        let out_rows = n
            .output
            .first()
            .and_then(|o| rows_of(o))
            .ok_or_else(|| mixes("produces a tensor that is not NCHW"))?;
        let out_stride = h as f64 / out_rows as f64;
        // The wrong rows at a window edge, in this op's input rows.
        let e_in = (in_reach as f64 / in_stride).ceil() as usize;
        let op = n.op_type.as_str();
        let out_reach = match op {
            "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "LpPool" => {
                let w = n.input.get(1).and_then(|w| {
                    inits
                        .get(w.as_str())
                        .map(|t| t.dims.iter().map(|&d| d as usize).collect::<Vec<_>>())
                });
                let e = sliding_reach(n, w.as_deref(), e_in)
                    .ok_or_else(|| mixes("has no kernel size"))?;
                (e as f64 * out_stride).ceil() as usize
            }
            "Resize" | "Upsample" => {
                // Each input row fans out by the scale; interpolation also reads a neighbour.
                let f = in_stride / out_stride;
                let nearest = n
                    .attribute
                    .iter()
                    .any(|a| a.name == "mode" && a.s == b"nearest");
                let e = e_in + usize::from(!nearest);
                (((e as f64 * f).ceil() + 1.0) * out_stride).ceil() as usize
            }
            "Concat" => {
                let axis = n
                    .attribute
                    .iter()
                    .find(|a| a.name == "axis")
                    .map(|a| a.i)
                    .unwrap_or(0);
                if axis != 1 && axis != -3 {
                    return Err(mixes("concatenates along a spatial axis"));
                }
                in_reach
            }
            _ if ROWWISE.contains(&op) => {
                // Every operand must be row-local: a spatial tensor at the same stride, or a
                // constant without rows (scalar, per channel).
                for x in n.input.iter().filter(|x| !x.is_empty()) {
                    if reach.contains_key(x) {
                        if rows_of(x) != rows_of(spatial_in[0]) {
                            return Err(mixes("combines tensors of different heights"));
                        }
                    } else if let Some(s) = shapes.get(x) {
                        if s.len() >= 2 && s[s.len() - 2] > 1 {
                            return Err(mixes("broadcasts a constant with rows"));
                        }
                    }
                }
                in_reach
            }
            _ => return Err(mixes("mixes rows of the whole image")),
        };
        for out in n.output.iter().filter(|o| !o.is_empty()) {
            let rows = rows_of(out).ok_or_else(|| mixes("produces a tensor that is not NCHW"))?;
            // Input rows per row of this tensor, h/rows = p/q reduced: windows must start at
            // multiples of p for the tensor's rows to start at an integer.
            let g = gcd(h, rows);
            align = lcm(align, h / g);
            reach.insert(out.clone(), out_reach);
        }
    }
    let mut halo = 0;
    for o in &graph.output {
        let r = reach.get(&o.name).ok_or_else(|| {
            refuse(
                path,
                format!("output '{}' does not come from the image", o.name),
            )
        })?;
        halo = halo.max(*r);
    }
    if h % align != 0 {
        return Err(refuse(
            path,
            format!("the input height {h} is not a multiple of the graph's total stride {align}"),
        ));
    }
    Ok((halo.div_ceil(align) * align, align))
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Strips for `tiles` cores on an image of `h` rows.
pub fn plan_windows(h: usize, tiles: usize, halo: usize, align: usize) -> Option<TileSpec> {
    let tiles = tiles.max(1);
    let units = h / align;
    if tiles > units {
        return None;
    }
    let cuts: Vec<usize> = (0..=tiles).map(|i| (units * i / tiles) * align).collect();
    let widest = cuts.windows(2).map(|w| w[1] - w[0]).max()?;
    let window = (widest + 2 * halo).min(h);
    if window >= h {
        return None;
    }
    let windows = cuts
        .windows(2)
        .map(|w| {
            let want = w[0].saturating_sub(halo);
            let start = want.min(h - window) / align * align;
            TileWindow {
                start,
                rows: (w[0], w[1]),
            }
        })
        .collect();
    Some(TileSpec {
        tiles,
        halo_rows: halo,
        align_rows: align,
        window_rows: window,
        windows,
    })
}

/// What `edgeslim-rt bench --tiles N` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TiledStats {
    pub spec: TileSpec,
    pub latency: crate::stats::LatencyStats,
    /// Largest |tiled − whole| over every output value (0 when the strips are exact).
    pub max_abs_diff_vs_whole: f64,
}

/// Time `runs` tiled runs (after `warmup`) and compare their output with `whole_outputs`.
pub fn bench_tiled(
    tiled: &TiledModel,
    input: &Tensor,
    whole_outputs: &[Tensor],
    warmup: usize,
    runs: usize,
) -> Result<TiledStats> {
    for _ in 0..warmup {
        tiled.run(input)?;
    }
    let mut samples = Vec::with_capacity(runs);
    let mut last = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        last = tiled.run(input)?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut diff = 0.0f64;
    for (a, b) in last.iter().zip(whole_outputs) {
        let (a, b) = (f32_rows(&tiled.path, a)?, f32_rows(&tiled.path, b)?);
        for (x, y) in a.iter().zip(b) {
            diff = diff.max((x - y).abs() as f64);
        }
    }
    Ok(TiledStats {
        spec: tiled.spec.clone(),
        latency: crate::stats::LatencyStats::from_samples(samples, warmup),
        max_abs_diff_vs_whole: diff,
    })
}

/// A model run strip by strip on several cores.
pub struct TiledModel {
    pub path: PathBuf,
    pub spec: TileSpec,
    /// The plan at the window's height, shared by every strip.
    pub window: LoadedModel,
    /// The full input shape.
    pub input_shape: Vec<usize>,
    /// Per output: its full shape.
    pub output_shapes: Vec<Vec<usize>>,
}

impl TiledModel {
    /// Analyse the graph at the full input shape of `opts`, then plan it at the strip height.
    pub fn load(path: &Path, opts: &LoadOptions, tiles: usize) -> Result<TiledModel> {
        let bytes = std::fs::read(path).map_err(|e| RuntimeError::io(path, e))?;
        let proto = decode_proto(path, &bytes)?;
        let full = TypedOnnx::from_bytes(bytes.clone(), path, path.parent(), opts, Instant::now())?;
        if full.inputs.len() != 1 {
            return Err(refuse(
                path,
                "strips are cut from a single image input".into(),
            ));
        }
        let (halo, align) = analyze(path, &proto, &full.tensor_shapes)?;
        let input_shape = full.inputs[0].shape.clone();
        let h = input_shape[2];
        let spec = plan_windows(h, tiles, halo, align).ok_or_else(|| {
            refuse(
                path,
                format!(
                    "{h} rows are too few for {tiles} strips with a halo of {halo} rows (stride {align})"
                ),
            )
        })?;
        let mut window_shape = input_shape.clone();
        window_shape[2] = spec.window_rows;
        let window_opts = LoadOptions {
            input_shapes: vec![InputShape {
                name: Some(full.inputs[0].name.clone()),
                dims: window_shape,
            }],
            threads: 1,
            ..opts.clone()
        };
        let window = LoadedModel::from_bytes(bytes, path, path.parent(), &window_opts)?;
        let mut output_shapes = Vec::new();
        for (spec_full, spec_win) in full.outputs.iter().zip(&window.outputs) {
            let (f, w) = (&spec_full.shape, &spec_win.shape);
            let scales = f.len() == 4 && w.len() == 4 && f[2] * spec.window_rows == w[2] * h;
            if !scales {
                return Err(refuse(
                    path,
                    format!(
                        "output '{}' is {f:?} for the image and {w:?} for a strip: it does not scale with the height",
                        spec_full.name
                    ),
                ));
            }
            output_shapes.push(f.clone());
        }
        Ok(TiledModel {
            path: path.into(),
            spec,
            window,
            input_shape,
            output_shapes,
        })
    }

    /// Run every strip on its own thread and stitch the outputs.
    pub fn run(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        let shape = &self.input_shape;
        if input.shape() != shape.as_slice() {
            return Err(RuntimeError::Input {
                path: self.path.clone(),
                input: self.window.inputs[0].name.clone(),
                reason: format!(
                    "tensor has shape {:?}, the model runs at {shape:?}",
                    input.shape()
                ),
            });
        }
        let x = f32_rows(&self.path, input)?;
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        let win = self.spec.window_rows;
        let results: Vec<Result<Vec<Tensor>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .spec
                .windows
                .iter()
                .map(|tw| {
                    scope.spawn(move || {
                        let mut part = Vec::with_capacity(n * c * win * w);
                        for plane in 0..n * c {
                            let from = (plane * h + tw.start) * w;
                            part.extend_from_slice(&x[from..from + win * w]);
                        }
                        let t = Tensor::from_shape(&[n, c, win, w], &part)
                            .map_err(|e| RuntimeError::tract(&self.path, "cutting a strip", e))?;
                        self.window.run(vec![t])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(RuntimeError::Other("a strip's thread panicked".into()))
                    })
                })
                .collect()
        });
        let parts: Vec<Vec<Tensor>> = results.into_iter().collect::<Result<_>>()?;
        let mut outputs = Vec::new();
        for (k, full_shape) in self.output_shapes.iter().enumerate() {
            let (on, oc, oh, ow) = (full_shape[0], full_shape[1], full_shape[2], full_shape[3]);
            let mut data = vec![0f32; on * oc * oh * ow];
            let pw = win * oh / h;
            for (tw, part) in self.spec.windows.iter().zip(&parts) {
                let p = f32_rows(&self.path, &part[k])?;
                let (r0, r1) = (tw.rows.0 * oh / h, tw.rows.1 * oh / h);
                let offset = tw.start * oh / h;
                for plane in 0..on * oc {
                    let dst = (plane * oh + r0) * ow;
                    let src = (plane * pw + r0 - offset) * ow;
                    data[dst..dst + (r1 - r0) * ow].copy_from_slice(&p[src..src + (r1 - r0) * ow]);
                }
            }
            outputs.push(
                Tensor::from_shape(full_shape, &data)
                    .map_err(|e| RuntimeError::tract(&self.path, "stitching", e))?,
            );
        }
        Ok(outputs)
    }
}

/// A contiguous f32 tensor's values.
fn f32_rows<'a>(path: &Path, t: &'a Tensor) -> Result<&'a [f32]> {
    t.to_plain_array_view::<f32>()
        .ok()
        .and_then(|v| v.to_slice())
        .ok_or_else(|| RuntimeError::Data {
            path: path.into(),
            reason: format!(
                "strips need contiguous f32 tensors, got {:?}",
                t.datum_type()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_their_rows_with_the_halo_and_stay_aligned() {
        let s = plan_windows(640, 2, 96, 32).unwrap();
        assert_eq!(s.window_rows, 320 + 192);
        for tw in &s.windows {
            assert_eq!(tw.start % 32, 0);
            assert!(tw.start + s.window_rows <= 640);
            assert!(tw.start <= tw.rows.0.saturating_sub(96));
            assert!(tw.start + s.window_rows >= (tw.rows.1 + 96).min(640));
        }
        assert_eq!(s.windows[0].rows, (0, 320));
        assert_eq!(s.windows[1].rows, (320, 640));
        // Four strips of an uneven number of units.
        let s = plan_windows(224, 4, 16, 16).unwrap();
        let covered: usize = s.windows.iter().map(|w| w.rows.1 - w.rows.0).sum();
        assert_eq!(covered, 224);
        // A halo as large as the image leaves nothing to gain.
        assert!(plan_windows(64, 2, 64, 8).is_none());
        assert!(plan_windows(64, 16, 0, 8).is_none());
    }
}
