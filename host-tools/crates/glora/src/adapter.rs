//! Insert GLoRA adapters into a graph, and merge trained ones back into plain weights.
//!
//! In the adapted graph each wrapped layer reads `W'` and `b'` computed from the frozen `W0`,
//! `b0` and the trainable factors (initializers named `glora.NODE.a.u`, `…a.v`, `…a`, …), so
//! the engine trains the factors through ordinary ops. [`merge`] computes `W'` and `b'` once
//! and writes them into the *original* graph's initializers: the merged model has exactly the
//! input's nodes and shapes.

use crate::layers::{Layer, Layout};
use crate::support::{LayerSupport, Support};
use edgeslim_onnx::node::{ints, make, tensor};
use edgeslim_onnx::{Error, OnnxModel, Result, Tensor};
use ndarray::{ArrayD, Ix2, IxDyn};
use serde::Serialize;

/// The prefix of every adapter initializer (what the engine trains).
pub const PREFIX: &str = "glora.";

/// One wrapped layer and its support.
#[derive(Debug, Clone, Serialize)]
pub struct Adapter {
    pub layer: Layer,
    pub support: LayerSupport,
    /// Initializer prefix of this layer's factors.
    pub prefix: String,
}

impl Adapter {
    pub fn params(&self) -> usize {
        self.support
            .params(self.layer.outputs(), self.layer.fan_in())
    }

    /// Rows and columns of the weight as the LoRA product builds it (a convolution's as
    /// `[out, fan_in]`, reshaped after).
    fn matrix(&self) -> (usize, usize) {
        let l = &self.layer;
        match l.layout {
            Layout::InOut => (l.dims[0], l.dims[1]),
            Layout::OutIn | Layout::Conv => (l.outputs(), l.fan_in()),
        }
    }

    /// The shape of a per-output vector, broadcast against the weight.
    fn vector_dims(&self) -> Vec<usize> {
        let out = self.layer.outputs();
        match self.layer.layout {
            Layout::InOut => vec![out],
            Layout::OutIn => vec![out, 1],
            Layout::Conv => vec![out, 1, 1, 1],
        }
    }
}

/// A small deterministic stream for the LoRA factors that start non-zero.
pub(crate) struct Draw(edgeslim_runtime::input::SplitMix64);

impl Draw {
    pub(crate) fn new(seed: u64) -> Draw {
        Draw(edgeslim_runtime::input::SplitMix64(seed ^ 0x6c07a))
    }

    /// Kaiming-uniform-like values for a factor with `fan_in` rows feeding it.
    fn uniform(&mut self, dims: Vec<usize>, fan_in: usize) -> Result<Tensor> {
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let n: usize = dims.iter().product();
        let v = (0..n)
            .map(|_| (self.0.next_f32() * 2.0 - 1.0) * bound)
            .collect();
        Tensor::f32(dims, v)
    }
}

fn zeros(dims: Vec<usize>) -> Result<Tensor> {
    let n = dims.iter().product();
    Tensor::f32(dims, vec![0.0; n])
}

/// Builds the adapter ops of one layer into the graph.
struct Builder<'a> {
    m: &'a mut OnnxModel,
}

impl Builder<'_> {
    fn op(&mut self, op: &str, inputs: &[&str], base: &str) -> String {
        self.op_with(op, inputs, base, vec![])
    }

    /// A node whose output (and name) is a fresh name from `base`.
    fn op_with(
        &mut self,
        op: &str,
        inputs: &[&str],
        base: &str,
        attrs: Vec<onnx_protobuf::AttributeProto>,
    ) -> String {
        let out = self.m.fresh_name(base);
        self.m
            .graph_mut()
            .node
            .push(make(op, inputs, &[&out], &out, attrs));
        out
    }

    fn shape(&mut self, base: &str, dims: &[i64]) -> Result<String> {
        let t = Tensor::i64(vec![dims.len()], dims.to_vec())?;
        let out = self.m.fresh_name(base);
        self.m.graph_mut().node.push(make(
            "Constant",
            &[],
            &[&out],
            &out,
            vec![tensor("value", &t)],
        ));
        Ok(out)
    }
}

/// Initializer name of one option of a term: `PREFIX.term.vector`, `…scalar`, `…u` / `…v`
/// for LoRA's factors (distinct, so a supernet can hold every option of a term at once).
pub fn option_name(prefix: &str, term: &str, s: Support) -> String {
    let kind = match s {
        Support::Lora(_) => "lora",
        Support::Vector => "vector",
        Support::Scalar => "scalar",
        Support::None => "none",
    };
    format!("{prefix}.{term}.{kind}")
}

/// The tensor of one option of a weight term (A or B), in the weight's shape or
/// broadcastable to it; `None` for no term.
fn weight_option(
    b: &mut Builder,
    a: &Adapter,
    term: &str,
    s: Support,
    draw: &mut Draw,
) -> Result<Option<String>> {
    let p = option_name(&a.prefix, term, s);
    let (rows, cols) = a.matrix();
    Ok(match s {
        Support::None => None,
        Support::Scalar => {
            b.m.set_initializer(&p, &zeros(vec![1])?);
            Some(p)
        }
        Support::Vector => {
            b.m.set_initializer(&p, &zeros(a.vector_dims())?);
            Some(p)
        }
        Support::Lora(r) => {
            let (u, v) = (format!("{p}.u"), format!("{p}.v"));
            b.m.set_initializer(&u, &draw.uniform(vec![rows, r], rows)?);
            b.m.set_initializer(&v, &zeros(vec![r, cols])?);
            let prod = b.op("MatMul", &[&u, &v], &format!("{p}.product"));
            Some(if a.layer.layout == Layout::Conv {
                let dims: Vec<i64> = a.layer.dims.iter().map(|&d| d as i64).collect();
                let shape = b.shape(&format!("{p}.shape"), &dims)?;
                b.op("Reshape", &[&prod, &shape], &format!("{p}.kernel"))
            } else {
                prod
            })
        }
    })
}

/// One option of C as a `[fan_in, 1]` column.
fn c_option(b: &mut Builder, a: &Adapter, s: Support, draw: &mut Draw) -> Result<Option<String>> {
    let p = option_name(&a.prefix, "c", s);
    let fan_in = a.layer.fan_in();
    Ok(match s {
        Support::None | Support::Scalar => None,
        Support::Vector => {
            b.m.set_initializer(&p, &zeros(vec![fan_in, 1])?);
            Some(p)
        }
        Support::Lora(r) => {
            let (u, v) = (format!("{p}.u"), format!("{p}.v"));
            b.m.set_initializer(&u, &draw.uniform(vec![fan_in, r], fan_in)?);
            b.m.set_initializer(&v, &zeros(vec![r, 1])?);
            Some(b.op("MatMul", &[&u, &v], &format!("{p}.product")))
        }
    })
}

/// One option of a bias term (D or E): `[out]` or `[1]`.
fn bias_option(b: &mut Builder, a: &Adapter, term: &str, s: Support) -> Result<Option<String>> {
    let p = option_name(&a.prefix, term, s);
    let dims = match s {
        Support::Vector => vec![a.layer.outputs()],
        Support::Scalar => vec![1],
        _ => return Ok(None),
    };
    b.m.set_initializer(&p, &zeros(dims)?);
    Ok(Some(p))
}

/// `W0 · C` as a `[out]` vector, `column` a `[fan_in, 1]` tensor.
fn w0_times(b: &mut Builder, a: &Adapter, column: &str) -> Result<String> {
    let p = format!("{}.c", a.prefix);
    let w = a.layer.weight.clone();
    let product = match a.layer.layout {
        Layout::InOut => {
            let row = b.op_with(
                "Transpose",
                &[column],
                &format!("{p}.row"),
                vec![ints("perm", &[1, 0])],
            );
            b.op("MatMul", &[&row, &w], &format!("{p}.w0c"))
        }
        Layout::OutIn => b.op("MatMul", &[&w, column], &format!("{p}.w0c")),
        Layout::Conv => {
            let shape = b.shape(
                &format!("{p}.matrix.shape"),
                &[a.layer.outputs() as i64, a.layer.fan_in() as i64],
            )?;
            let m = b.op("Reshape", &[&w, &shape], &format!("{p}.matrix"));
            b.op("MatMul", &[&m, column], &format!("{p}.w0c"))
        }
    };
    let flat = b.shape(&format!("{p}.flat"), &[-1])?;
    Ok(b.op("Reshape", &[&product, &flat], &format!("{p}.w0c.flat")))
}

/// The options a supernet holds for one term, and how a term's tensor is formed.
pub(crate) enum TermForm<'a> {
    /// One support (a plain adapter).
    One(Support),
    /// Every option, each multiplied by its gate `PREFIX.term.gate.KIND` ([1], frozen,
    /// set per step) and summed.
    Gated(&'a [Support]),
}

/// The term's tensor: the support's option, or the gated sum of the options.
fn term_tensor(
    b: &mut Builder,
    a: &Adapter,
    term: &str,
    form: &TermForm,
    draw: &mut Draw,
) -> Result<Option<String>> {
    let make = |b: &mut Builder, s: Support, draw: &mut Draw| match term {
        "a" | "b" => weight_option(b, a, term, s, draw),
        "c" => c_option(b, a, s, draw),
        _ => bias_option(b, a, term, s),
    };
    match form {
        TermForm::One(s) => make(b, *s, draw),
        TermForm::Gated(options) => {
            let mut sum: Option<String> = None;
            for &s in options.iter() {
                let Some(t) = make(b, s, draw)? else { continue };
                let gate = gate_name(&a.prefix, term, s);
                b.m.set_initializer(&gate, &Tensor::f32(vec![1], vec![1.0])?);
                let g = b.op("Mul", &[&t, &gate], &format!("{gate}.applied"));
                sum = Some(match sum {
                    None => g,
                    Some(x) => b.op("Add", &[&x, &g], &format!("{}.{term}.sum", a.prefix)),
                });
            }
            Ok(sum)
        }
    }
}

/// The gate of one option of a term in a supernet.
pub fn gate_name(prefix: &str, term: &str, s: Support) -> String {
    format!("{}.gate", option_name(prefix, term, s))
}

/// Wire one layer's adapter (its terms formed by `forms`, in the order A, B, C, D, E) into
/// the graph: the layer then reads `W'` and `b'`.
pub(crate) fn wire(
    m: &mut OnnxModel,
    a: &Adapter,
    forms: [TermForm; 5],
    draw: &mut Draw,
) -> Result<()> {
    let layer = &a.layer;
    let mut b = Builder { m };
    let w0 = layer.weight.clone();
    let [fa, fb, fc, fd, fe] = forms;
    let ta = term_tensor(&mut b, a, "a", &fa, draw)?;
    let tb = term_tensor(&mut b, a, "b", &fb, draw)?;
    let mut w = w0.clone();
    if let Some(ta) = ta {
        let scaled = b.op("Mul", &[&w0, &ta], &format!("{}.w0a", a.prefix));
        w = b.op("Add", &[&w, &scaled], &format!("{}.weight", a.prefix));
    }
    if let Some(tb) = tb {
        w = b.op("Add", &[&w, &tb], &format!("{}.weight", a.prefix));
    }
    let mut bias = None;
    if let Some((b0, reader, slot)) = &layer.bias {
        let mut v = b0.clone();
        if let Some(d) = term_tensor(&mut b, a, "d", &fd, draw)? {
            let scaled = b.op("Mul", &[b0, &d], &format!("{}.b0d", a.prefix));
            v = b.op("Add", &[&v, &scaled], &format!("{}.bias", a.prefix));
        }
        if let Some(e) = term_tensor(&mut b, a, "e", &fe, draw)? {
            v = b.op("Add", &[&v, &e], &format!("{}.bias", a.prefix));
        }
        if let Some(col) = term_tensor(&mut b, a, "c", &fc, draw)? {
            let c = w0_times(&mut b, a, &col)?;
            v = b.op("Add", &[&v, &c], &format!("{}.bias", a.prefix));
        }
        if &v != b0 {
            bias = Some((reader.clone(), *slot, v));
        }
    }
    for n in m.graph_mut().node.iter_mut() {
        if n.name == layer.node && w != w0 {
            n.input[1] = w.clone();
        }
        if let Some((reader, slot, v)) = &bias {
            if &n.name == reader {
                n.input[*slot] = v.clone();
            }
        }
    }
    Ok(())
}

/// The adapters of `plan` (bias terms dropped on layers without a bias, empty supports
/// skipped), refusing a weight two layers share.
pub(crate) fn plan_adapters(plan: &[(Layer, LayerSupport)]) -> Result<Vec<Adapter>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (layer, support) in plan {
        support.check()?;
        let support = if layer.bias.is_some() {
            *support
        } else {
            support.without_bias_terms()
        };
        if support.is_none() {
            continue;
        }
        if !seen.insert(layer.weight.clone()) {
            return Err(Error::tensor(
                &layer.weight,
                format!(
                    "is read by more than one adapted layer ({}); GLoRA adapts a weight once",
                    layer.node
                ),
            ));
        }
        out.push(Adapter {
            layer: layer.clone(),
            support,
            prefix: format!("{PREFIX}{}", layer.node),
        });
    }
    Ok(out)
}

/// `model` with the adapters of `plan` inserted (every factor that multiplies into the output
/// starts at zero, so the adapted model computes what `model` does).
pub fn insert(
    model: &OnnxModel,
    plan: &[(Layer, LayerSupport)],
    seed: u64,
) -> Result<(OnnxModel, Vec<Adapter>)> {
    let mut m = model.clone();
    let mut draw = Draw::new(seed);
    let adapters = plan_adapters(plan)?;
    for a in &adapters {
        let s = a.support;
        let forms = [s.a, s.b, s.c, s.d, s.e].map(TermForm::One);
        wire(&mut m, a, forms, &mut draw)?;
    }
    m.topo_sort()?;
    m.validate_references()?;
    Ok((m, adapters))
}

fn read(m: &OnnxModel, name: &str) -> Result<ArrayD<f32>> {
    let t = m
        .initializer(name)
        .ok_or_else(|| Error::tensor(name, format!("missing in {}", m.label())))?;
    Ok(Tensor::from_proto(t)?.to_array_f32())
}

fn matrix(a: ArrayD<f32>, name: &str) -> Result<ndarray::Array2<f32>> {
    a.into_dimensionality::<Ix2>()
        .map_err(|e| Error::tensor(name, format!("not a matrix: {e}")))
}

/// A weight term's value, broadcastable to the weight.
fn term_value(
    trained: &OnnxModel,
    a: &Adapter,
    term: &str,
    s: Support,
) -> Result<Option<ArrayD<f32>>> {
    let p = option_name(&a.prefix, term, s);
    Ok(match s {
        Support::None => None,
        Support::Scalar | Support::Vector => Some(read(trained, &p)?),
        Support::Lora(_) => {
            let (u, v) = (format!("{p}.u"), format!("{p}.v"));
            let prod = matrix(read(trained, &u)?, &u)?.dot(&matrix(read(trained, &v)?, &v)?);
            Some(
                prod.into_shape_with_order(IxDyn(&a.layer.dims))
                    .map_err(|e| Error::tensor(&p, format!("LoRA product: {e}")))?,
            )
        }
    })
}

fn broadcast_op(
    x: &ArrayD<f32>,
    t: &ArrayD<f32>,
    name: &str,
    f: impl Fn(f32, f32) -> f32,
) -> Result<ArrayD<f32>> {
    let t = t.broadcast(x.raw_dim()).ok_or_else(|| {
        Error::tensor(
            name,
            format!("{:?} does not broadcast to {:?}", t.shape(), x.shape()),
        )
    })?;
    let mut out = x.clone();
    out.zip_mut_with(&t, |o, &v| *o = f(*o, v));
    Ok(out)
}

/// The plain model: `original` with every weight it shares with `trained` (the head, or all
/// weights after full fine-tuning) taken from `trained`, and every adapted layer's `W'`, `b'`
/// computed from its factors. Same nodes, same shapes as `original`.
pub fn merge(original: &OnnxModel, trained: &OnnxModel, adapters: &[Adapter]) -> Result<OnnxModel> {
    let mut out = original.clone();
    let names: Vec<String> = original
        .graph()
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for n in names {
        if let Some(t) = trained.initializer(&n) {
            out.set_initializer(&n, &Tensor::from_proto(t)?);
        }
    }
    for a in adapters {
        let l = &a.layer;
        let w0 = read(trained, &l.weight)?;
        let mut w = w0.clone();
        if let Some(ta) = term_value(trained, a, "a", a.support.a)? {
            let scaled = broadcast_op(&w0, &ta, &l.weight, |x, t| x * t)?;
            w = &w + &scaled;
        }
        if let Some(tb) = term_value(trained, a, "b", a.support.b)? {
            w = broadcast_op(&w, &tb, &l.weight, |x, t| x + t)?;
        }
        if let Some((b0_name, _, _)) = &l.bias {
            let b0 = read(trained, b0_name)?;
            let mut b = b0.clone();
            for (term, s) in [("d", a.support.d), ("e", a.support.e)] {
                if s == Support::None {
                    continue;
                }
                let t = read(trained, &option_name(&a.prefix, term, s))?;
                let add = if term == "d" {
                    broadcast_op(&b0, &t, b0_name, |x, t| x * t)?
                } else {
                    broadcast_op(&b0, &t, b0_name, |_, t| t)?
                };
                b = &b + &add;
            }
            let c = match a.support.c {
                Support::Vector => Some(read(trained, &option_name(&a.prefix, "c", a.support.c))?),
                Support::Lora(_) => {
                    let p = option_name(&a.prefix, "c", a.support.c);
                    let (u, v) = (format!("{p}.u"), format!("{p}.v"));
                    Some(
                        matrix(read(trained, &u)?, &u)?
                            .dot(&matrix(read(trained, &v)?, &v)?)
                            .into_dyn(),
                    )
                }
                _ => None,
            };
            if let Some(c) = c {
                let c = matrix(c, "C")?.column(0).to_owned();
                let w0m = match l.layout {
                    Layout::InOut => matrix(w0.clone(), &l.weight)?.reversed_axes(),
                    Layout::OutIn => matrix(w0.clone(), &l.weight)?,
                    Layout::Conv => matrix(
                        w0.clone()
                            .into_shape_with_order(IxDyn(&[l.outputs(), l.fan_in()]))
                            .map_err(|e| Error::tensor(&l.weight, e.to_string()))?,
                        &l.weight,
                    )?,
                };
                b = &b + &w0m.dot(&c).into_dyn();
            }
            out.set_initializer(b0_name, &Tensor::from_array_f32(&b));
        }
        out.set_initializer(&l.weight, &Tensor::from_array_f32(&w));
    }
    Ok(out)
}
