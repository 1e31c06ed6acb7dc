//! Find the transformer blocks of an ONNX ViT: every multi-head attention (anchored on its
//! Softmax) with its q/k/v projections, head count and head size, output projection; every
//! MLP (a linear layer, an element-wise activation, a linear layer). Works on the prepared
//! form of `edgeslim_compress::prune::prepare` (constants as initializers, one initializer per
//! use, every node named) and knows the layouts exporters write:
//!
//! - q, k, v as three `MatMul` (+ `Add` bias) or `Gemm`, each reshaped to `[B, N, H, dh]`;
//! - one fused projection split into q, k, v by `Split` on the last axis, each reshaped;
//! - one fused projection reshaped to `[B, N, 3, H, dh]`, transposed and `Gather`ed (timm);
//! - the softmax scale as `Mul`/`Div` by a scalar on the scores or on q and k (DINOv2);
//! - reshape targets as constants or computed from `Shape` (PyTorch's dynamic export);
//! - LayerNorm as one op or decomposed (it is not touched: the residual width is kept).
//!
//! What it cannot follow is refused with the node and the reason.

use edgeslim_onnx::node::{attr_f, attr_i, attr_ints, display_name};
use edgeslim_onnx::{Error, OnnxModel, Result};
use onnx_protobuf::NodeProto;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A linear layer `y = x·W (+ b)`: `MatMul` with a constant 2-D weight and an optional `Add`
/// of a constant bias, or a `Gemm`.
#[derive(Debug, Clone, Serialize)]
pub struct Linear {
    /// The `MatMul`/`Gemm` node.
    pub node: String,
    pub weight: String,
    pub bias: Option<String>,
    /// The weight's axis that indexes outputs (1 for `MatMul` and `Gemm`; 0 for `Gemm`
    /// with `transB = 1`).
    pub out_axis: usize,
    /// The layer's output tensor (after the bias).
    pub output: String,
    pub inputs: usize,
    pub outputs: usize,
}

impl Linear {
    /// The weight's axis that indexes inputs.
    pub fn in_axis(&self) -> usize {
        1 - self.out_axis
    }
}

/// How q, k and v are computed.
#[derive(Debug, Clone, Serialize)]
pub enum Qkv {
    /// Three projections, each reshaped to heads by its own `Reshape` node.
    Separate {
        q: Box<Linear>,
        k: Box<Linear>,
        v: Box<Linear>,
        reshapes: [String; 3],
    },
    /// One projection of width 3·H·dh; `Split` on the last axis, each part reshaped.
    FusedSplit {
        linear: Linear,
        split: String,
        reshapes: [String; 3],
    },
    /// One projection reshaped to `[B, N, 3, H, dh]` by `reshape` (then transposed and
    /// gathered).
    FusedHeads { linear: Linear, reshape: String },
}

impl Qkv {
    /// The projections whose output columns are the attention's channels.
    pub fn linears(&self) -> Vec<&Linear> {
        match self {
            Qkv::Separate { q, k, v, .. } => vec![&**q, &**k, &**v],
            Qkv::FusedSplit { linear, .. } | Qkv::FusedHeads { linear, .. } => vec![linear],
        }
    }
}

/// One multi-head attention.
#[derive(Debug, Clone, Serialize)]
pub struct Attention {
    pub softmax: String,
    pub heads: usize,
    pub head_dim: usize,
    pub qkv: Qkv,
    /// The attention-weighted values `[B, H, N, dh]` (where a head mask applies).
    pub context: String,
    /// The `Reshape` merging the heads back to `[B, N, H·dh]`.
    pub merge: String,
    pub proj: Linear,
    /// The residual stream `[B, N, D]` the block reads (the other operand of the residual
    /// `Add` after the output projection), where a token mask applies; `None` when the
    /// block has no residual connection ViT-Slim can see.
    pub block_input: Option<String>,
    /// Tokens in the block's sequence.
    pub tokens: usize,
}

impl Attention {
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// One MLP: `fc2(act(fc1(x)))` with an element-wise activation.
#[derive(Debug, Clone, Serialize)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    /// The activation's output, `fc2`'s input (where the MLP mask applies).
    pub hidden: String,
    pub units: usize,
}

/// The transformer parts of a model, in graph order.
#[derive(Debug, Clone, Serialize)]
pub struct VitStructure {
    pub attentions: Vec<Attention>,
    pub mlps: Vec<Mlp>,
}

impl VitStructure {
    /// One line per block, for logs and errors.
    pub fn describe(&self) -> String {
        let heads: Vec<String> = self
            .attentions
            .iter()
            .map(|a| format!("{}x{}", a.heads, a.head_dim))
            .collect();
        let mlp: Vec<String> = self.mlps.iter().map(|m| m.units.to_string()).collect();
        format!(
            "{} attention blocks (heads x head size: {}), {} MLPs (units: {})",
            self.attentions.len(),
            heads.join(", "),
            self.mlps.len(),
            mlp.join(", ")
        )
    }
}

/// Element-wise ops an MLP activation may be built of (GELU as `Gelu` or its `Erf`/`Tanh`
/// decompositions, SiLU, ReLU, ...), with scalar constants only.
const ACTIVATION_OPS: &[&str] = &[
    "Gelu",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Relu",
    "Mul",
    "Add",
    "Div",
    "Sub",
    "Pow",
    "Sqrt",
    "Clip",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Elu",
    "Softplus",
];

struct View<'a> {
    m: &'a OnnxModel,
    producers: HashMap<String, usize>,
    consumers: HashMap<String, Vec<(usize, usize)>>,
    shapes: &'a HashMap<String, Vec<usize>>,
}

impl<'a> View<'a> {
    fn node(&self, i: usize) -> &'a NodeProto {
        &self.m.graph().node[i]
    }

    fn producer(&self, t: &str) -> Option<&'a NodeProto> {
        self.producers.get(t).map(|&i| self.node(i))
    }

    /// Consumers of `t`, without the `Shape` nodes that only read its dims.
    fn data_consumers(&self, t: &str) -> Vec<&'a NodeProto> {
        self.consumers
            .get(t)
            .map(|v| {
                v.iter()
                    .map(|&(i, _)| self.node(i))
                    .filter(|n| n.op_type != "Shape")
                    .collect()
            })
            .unwrap_or_default()
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        let t = self.m.initializer(name)?;
        Some(t.dims.iter().map(|&d| d.max(0) as usize).collect())
    }

    fn is_const(&self, name: &str) -> bool {
        self.m.initializer(name).is_some() && !self.m.graph_input_names().contains(name)
    }

    fn is_scalar_const(&self, name: &str) -> bool {
        self.is_const(name)
            && self
                .dims(name)
                .is_some_and(|d| d.iter().product::<usize>() == 1)
    }

    fn shape(&self, t: &str) -> Option<&Vec<usize>> {
        self.shapes.get(t)
    }

    /// The linear layer whose output is `t`.
    fn linear_ending_at(&self, t: &str) -> Option<Linear> {
        let p = self.producer(t)?;
        match p.op_type.as_str() {
            "Add" => {
                let (bias, other) = match (self.is_const(&p.input[0]), self.is_const(&p.input[1])) {
                    (true, false) => (&p.input[0], &p.input[1]),
                    (false, true) => (&p.input[1], &p.input[0]),
                    _ => return None,
                };
                let bd = self.dims(bias)?;
                let mm = self.producer(other)?;
                if mm.op_type != "MatMul" || self.data_consumers(other).len() != 1 {
                    return None;
                }
                let mut l = self.matmul(mm, t)?;
                if bd.iter().product::<usize>() != l.outputs || bd.len() != 1 {
                    return None;
                }
                l.bias = Some(bias.clone());
                Some(l)
            }
            "MatMul" => self.matmul(p, t),
            "Gemm" => {
                let w = p.input.get(1)?;
                let wd = self.dims(w)?;
                if !self.is_const(w)
                    || wd.len() != 2
                    || attr_i(p, "transA").unwrap_or(0) != 0
                    || attr_f(p, "alpha").unwrap_or(1.0) != 1.0
                    || attr_f(p, "beta").unwrap_or(1.0) != 1.0
                {
                    return None;
                }
                let out_axis = if attr_i(p, "transB").unwrap_or(0) == 1 {
                    0
                } else {
                    1
                };
                let bias = match p.input.get(2).filter(|b| !b.is_empty()) {
                    Some(b) if self.dims(b)? == [wd[out_axis]] => Some(b.clone()),
                    Some(_) => return None,
                    None => None,
                };
                Some(Linear {
                    node: display_name(p),
                    weight: w.clone(),
                    bias,
                    out_axis,
                    output: t.to_string(),
                    inputs: wd[1 - out_axis],
                    outputs: wd[out_axis],
                })
            }
            _ => None,
        }
    }

    fn matmul(&self, mm: &NodeProto, output: &str) -> Option<Linear> {
        let w = mm.input.get(1)?;
        let wd = self.dims(w)?;
        if !self.is_const(w) || wd.len() != 2 {
            return None;
        }
        Some(Linear {
            node: display_name(mm),
            weight: w.clone(),
            bias: None,
            out_axis: 1,
            output: output.to_string(),
            inputs: wd[0],
            outputs: wd[1],
        })
    }

    /// Walk back from `t` through transposes and scalar scalings to the node that made the
    /// heads.
    fn through_layout(&self, t: &str) -> Option<&'a NodeProto> {
        let mut cur = t.to_string();
        for _ in 0..8 {
            let p = self.producer(&cur)?;
            match p.op_type.as_str() {
                "Transpose" => cur = p.input[0].clone(),
                "Mul" | "Div" if self.is_scalar_const(&p.input[1]) => cur = p.input[0].clone(),
                "Mul" if self.is_scalar_const(&p.input[0]) => cur = p.input[1].clone(),
                _ => return Some(p),
            }
        }
        None
    }

    /// The single data consumer of `t`.
    fn only_consumer(&self, t: &str) -> Option<&'a NodeProto> {
        match self.data_consumers(t).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// Where one of q, k, v comes from.
enum Source {
    /// A `Reshape` to `[B, N, H, dh]` of a projection's output.
    Reshaped {
        reshape: String,
        data: String,
        heads: usize,
        head_dim: usize,
    },
    /// Part `part` of a `[B, N, 3, H, dh]` reshape (timm's fused layout).
    Gathered {
        reshape: String,
        data: String,
        part: usize,
        heads: usize,
        head_dim: usize,
    },
}

fn source_of(v: &View, t: &str, what: &str) -> std::result::Result<Source, String> {
    let p = v
        .through_layout(t)
        .ok_or_else(|| format!("{what}: no producer found"))?;
    match p.op_type.as_str() {
        "Reshape" => {
            let out = v
                .shape(&p.output[0])
                .ok_or("no shape for the head reshape")?;
            if out.len() != 4 {
                return Err(format!(
                    "{what}: reshape '{}' gives rank {} (expected [B, N, heads, head size])",
                    display_name(p),
                    out.len()
                ));
            }
            Ok(Source::Reshaped {
                reshape: display_name(p),
                data: p.input[0].clone(),
                heads: out[2],
                head_dim: out[3],
            })
        }
        "Gather" => {
            let axis = attr_i(p, "axis").unwrap_or(0);
            let idx =
                v.m.constant(&p.input[1])
                    .and_then(|r| r.ok())
                    .and_then(|t| t.to_i64_vec())
                    .filter(|i| i.len() == 1)
                    .ok_or_else(|| {
                        format!(
                            "{what}: Gather '{}' index is not a constant",
                            display_name(p)
                        )
                    })?;
            let tr = v.producer(&p.input[0]).filter(|n| n.op_type == "Transpose");
            let tr = tr.ok_or_else(|| {
                format!(
                    "{what}: Gather '{}' does not read a transpose",
                    display_name(p)
                )
            })?;
            let perm = attr_ints(tr, "perm").unwrap_or_default();
            let rs = v.producer(&tr.input[0]).filter(|n| n.op_type == "Reshape");
            let rs = rs.ok_or_else(|| {
                format!(
                    "{what}: transpose '{}' does not read a reshape",
                    display_name(tr)
                )
            })?;
            let out = v
                .shape(&rs.output[0])
                .ok_or("no shape for the fused reshape")?;
            if axis != 0 || perm != [2, 0, 3, 1, 4] || out.len() != 5 || out[2] != 3 {
                return Err(format!(
                    "{what}: fused q/k/v layout not known (reshape to {out:?}, perm {perm:?}, gather axis {axis}); known: [B, N, 3, H, dh] with perm [2, 0, 3, 1, 4]"
                ));
            }
            Ok(Source::Gathered {
                reshape: display_name(rs),
                data: rs.input[0].clone(),
                part: idx[0].rem_euclid(3) as usize,
                heads: out[3],
                head_dim: out[4],
            })
        }
        other => Err(format!(
            "{what} comes from a {other} node ('{}'), not from a reshape to heads",
            display_name(p)
        )),
    }
}

fn attention_at(v: &View, s: &NodeProto) -> std::result::Result<Attention, String> {
    // Scores: MatMul(q, kᵀ), perhaps scaled.
    let mut cur = s.input[0].clone();
    let qk = loop {
        let p = v.producer(&cur).ok_or("the scores have no producer")?;
        match p.op_type.as_str() {
            "MatMul" => break p,
            "Mul" | "Div" if v.is_scalar_const(&p.input[1]) => cur = p.input[0].clone(),
            "Mul" if v.is_scalar_const(&p.input[0]) => cur = p.input[1].clone(),
            other => {
                return Err(format!(
                    "the scores come from a {other} node ('{}'): not q·kᵀ times a scalar",
                    display_name(p)
                ))
            }
        }
    };
    let av = v
        .only_consumer(&s.output[0])
        .filter(|n| n.op_type == "MatMul" && n.input[0] == s.output[0])
        .ok_or("the softmax is not read by one MatMul with the values")?;
    let q = source_of(v, &qk.input[0], "q")?;
    let k = source_of(v, &qk.input[1], "k")?;
    let val = source_of(v, &av.input[1], "v")?;
    // Context → Transpose → Reshape (merge) → output projection.
    let tr = v
        .only_consumer(&av.output[0])
        .filter(|n| n.op_type == "Transpose")
        .ok_or("the attention output is not transposed back")?;
    let merge = v
        .only_consumer(&tr.output[0])
        .filter(|n| n.op_type == "Reshape")
        .ok_or("the heads are not merged by a reshape")?;
    let proj_node = v
        .only_consumer(&merge.output[0])
        .ok_or("the merged heads have more than one consumer")?;
    let proj_out = match proj_node.op_type.as_str() {
        "MatMul" => match v.data_consumers(&proj_node.output[0]).as_slice() {
            [add] if add.op_type == "Add" && v.linear_ending_at(&add.output[0]).is_some() => {
                add.output[0].clone()
            }
            _ => proj_node.output[0].clone(),
        },
        _ => proj_node.output[0].clone(),
    };
    let proj = v.linear_ending_at(&proj_out).ok_or_else(|| {
        format!(
            "the merged heads feed '{}', not a linear layer",
            display_name(proj_node)
        )
    })?;
    let dims = |s: &Source| match s {
        Source::Reshaped {
            heads, head_dim, ..
        }
        | Source::Gathered {
            heads, head_dim, ..
        } => (*heads, *head_dim),
    };
    let (heads, head_dim) = dims(&q);
    if dims(&k) != (heads, head_dim) || dims(&val) != (heads, head_dim) {
        return Err("q, k and v have different head layouts".into());
    }
    if proj.inputs != heads * head_dim {
        return Err(format!(
            "the output projection takes {} inputs, not heads × head size = {}",
            proj.inputs,
            heads * head_dim
        ));
    }
    let qkv = match (q, k, val) {
        (
            Source::Reshaped {
                reshape: rq,
                data: dq,
                ..
            },
            Source::Reshaped {
                reshape: rk,
                data: dk,
                ..
            },
            Source::Reshaped {
                reshape: rv,
                data: dv,
                ..
            },
        ) => {
            let split = [&dq, &dk, &dv].map(|d| v.producer(d).filter(|n| n.op_type == "Split"));
            match split {
                [Some(a), Some(b), Some(c)]
                    if display_name(a) == display_name(b) && display_name(b) == display_name(c) =>
                {
                    let parts: Vec<usize> = [&dq, &dk, &dv]
                        .iter()
                        .filter_map(|d| a.output.iter().position(|o| o == *d))
                        .collect();
                    let axis = attr_i(a, "axis").unwrap_or(0);
                    let rank = v.shape(&a.input[0]).map(|s| s.len() as i64).unwrap_or(0);
                    if parts != [0, 1, 2] || a.output.len() != 3 || (axis != -1 && axis != rank - 1)
                    {
                        return Err(format!(
                            "Split '{}' is not q, k, v in that order on the last axis",
                            display_name(a)
                        ));
                    }
                    let linear = v.linear_ending_at(&a.input[0]).ok_or_else(|| {
                        format!(
                            "the fused q/k/v split by '{}' is not a linear layer's output",
                            display_name(a)
                        )
                    })?;
                    Qkv::FusedSplit {
                        linear,
                        split: display_name(a),
                        reshapes: [rq, rk, rv],
                    }
                }
                _ => {
                    let lin = |d: &str, what: &str| {
                        v.linear_ending_at(d).ok_or_else(|| {
                            format!("{what} is not a linear layer's output (tensor '{d}')")
                        })
                    };
                    Qkv::Separate {
                        q: Box::new(lin(&dq, "q")?),
                        k: Box::new(lin(&dk, "k")?),
                        v: Box::new(lin(&dv, "v")?),
                        reshapes: [rq, rk, rv],
                    }
                }
            }
        }
        (
            Source::Gathered {
                reshape: a,
                data,
                part: 0,
                ..
            },
            Source::Gathered {
                reshape: b,
                part: 1,
                ..
            },
            Source::Gathered {
                reshape: c,
                part: 2,
                ..
            },
        ) if a == b && b == c => {
            let linear = v
                .linear_ending_at(&data)
                .ok_or("the fused q/k/v projection is not a linear layer")?;
            Qkv::FusedHeads { linear, reshape: a }
        }
        _ => return Err("q, k and v come from different layouts".into()),
    };
    for l in qkv.linears() {
        // Anything else reading the projection would see its columns sliced.
        let readers = v.data_consumers(&l.output);
        if readers.len() != 1 {
            return Err(format!(
                "the projection '{}' output is read by {} nodes",
                l.node,
                readers.len()
            ));
        }
    }
    let block_input = residual_input(v, &proj.output);
    let tokens = v
        .shape(&proj.output)
        .filter(|s| s.len() == 3)
        .map(|s| s[1])
        .unwrap_or(0);
    Ok(Attention {
        softmax: display_name(s),
        heads,
        head_dim,
        qkv,
        context: av.output[0].clone(),
        merge: display_name(merge),
        proj,
        block_input,
        tokens,
    })
}

/// From the attention's output, through per-channel scalings (LayerScale), to the residual
/// `Add`: its other operand.
fn residual_input(v: &View, from: &str) -> Option<String> {
    let mut cur = from.to_string();
    for _ in 0..4 {
        let n = v.only_consumer(&cur)?;
        match n.op_type.as_str() {
            "Mul" | "Div" if n.input.iter().any(|i| v.is_const(i)) => cur = n.output[0].clone(),
            "Add" => {
                let other = n.input.iter().find(|i| **i != cur)?;
                let same = v.shape(other).is_some() && v.shape(other) == v.shape(&cur);
                return (same && !v.is_const(other)).then(|| other.clone());
            }
            _ => return None,
        }
    }
    None
}

/// The MLP whose second layer is `fc2` (a linear layer ending at `fc2_out`), if its input is
/// an element-wise function of one linear layer's output.
fn mlp_at(v: &View, fc2: &Linear, fc2_input: &str, taken: &HashSet<String>) -> Option<Mlp> {
    let mut stack = vec![fc2_input.to_string()];
    let mut region: HashSet<String> = HashSet::new();
    let mut fc1: Option<Linear> = None;
    while let Some(t) = stack.pop() {
        if !region.insert(t.clone()) {
            continue;
        }
        if let Some(l) = v.linear_ending_at(&t) {
            if taken.contains(&l.node) || l.outputs != fc2.inputs {
                return None;
            }
            match &fc1 {
                Some(f) if f.node != l.node => return None,
                _ => fc1 = Some(l),
            }
            continue;
        }
        let p = v.producer(&t)?;
        if !ACTIVATION_OPS.contains(&p.op_type.as_str()) {
            return None;
        }
        for i in p.input.iter().filter(|i| !i.is_empty()) {
            if v.is_const(i) {
                if !v.is_scalar_const(i) {
                    return None;
                }
            } else {
                stack.push(i.clone());
            }
        }
    }
    let fc1 = fc1?;
    if fc1.output == fc2_input {
        // No activation: two linear layers in a row are not an MLP block.
        return None;
    }
    // Nothing outside the activation reads its tensors: slicing the units is local.
    let fc2_node = v.producer(&fc2.output).map(display_name);
    for t in &region {
        for c in v.data_consumers(t) {
            let inside = c.output.iter().any(|o| region.contains(o));
            let is_fc2 = display_name(c) == fc2.node || Some(display_name(c)) == fc2_node;
            if !inside && !is_fc2 {
                return None;
            }
        }
    }
    Some(Mlp {
        units: fc1.outputs,
        fc1,
        fc2: fc2.clone(),
        hidden: fc2_input.to_string(),
    })
}

/// Recognise the transformer blocks of a prepared model with the tensor shapes of
/// `prepare`. Errors name the model and, for an attention it cannot follow, the Softmax node.
pub fn recognize(model: &OnnxModel, shapes: &HashMap<String, Vec<usize>>) -> Result<VitStructure> {
    let v = View {
        m: model,
        producers: model.producers(),
        consumers: model.consumers(),
        shapes,
    };
    let mut attentions = Vec::new();
    for s in model.graph().node.iter().filter(|n| n.op_type == "Softmax") {
        match attention_at(&v, s) {
            Ok(a) => attentions.push(a),
            Err(why) => {
                return Err(Error::Invalid(format!(
                    "{}: node '{}' (Softmax) is not an attention ViT-Slim can follow: {why}",
                    model.label(),
                    display_name(s)
                )))
            }
        }
    }
    if attentions.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no transformer block found (no Softmax over q·kᵀ); ViT-Slim needs a vision transformer",
            model.label()
        )));
    }
    let mut taken: HashSet<String> = HashSet::new();
    for a in &attentions {
        for l in a.qkv.linears() {
            taken.insert(l.node.clone());
        }
        taken.insert(a.proj.node.clone());
    }
    let mut mlps = Vec::new();
    for (i, n) in model.graph().node.iter().enumerate() {
        let name = display_name(n);
        if taken.contains(&name) || !matches!(n.op_type.as_str(), "MatMul" | "Gemm") {
            continue;
        }
        let out = match (
            n.op_type.as_str(),
            v.data_consumers(&n.output[0]).as_slice(),
        ) {
            ("MatMul", [add]) if add.op_type == "Add" => add.output[0].clone(),
            _ => n.output[0].clone(),
        };
        let Some(fc2) = v
            .linear_ending_at(&out)
            .or_else(|| v.linear_ending_at(&n.output[0]))
        else {
            continue;
        };
        let input = v.node(i).input[0].clone();
        if let Some(m) = mlp_at(&v, &fc2, &input, &taken) {
            taken.insert(m.fc1.node.clone());
            taken.insert(m.fc2.node.clone());
            mlps.push(m);
        }
    }
    Ok(VitStructure { attentions, mlps })
}
