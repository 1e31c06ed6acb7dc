//! Loading an ONNX model into tract: fix input shapes, type, optimise, plan.
//!
//! Real exports often declare symbolic output shapes (PP-OCR: `p2o.DynamicDimension.3`) that
//! clash with the fixed input shapes a board runs at. When the shapes we run at differ from the
//! declared ones we drop the declared output and `value_info` facts and let tract infer them.

use crate::error::{one_line, Result, RuntimeError};
use crate::shapes::InputShape;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

/// Refuse any single tensor above this many bytes unless told otherwise: a model declaring
/// absurd dimensions must fail with a message, not take the machine down.
pub const DEFAULT_MAX_TENSOR_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub input_shapes: Vec<InputShape>,
    /// Run tract's optimiser (kernel selection, fusion). Off gives the decluttered graph.
    pub optimize: bool,
    pub threads: usize,
    pub max_tensor_bytes: u64,
    /// Ignore declared output shapes and value_info even when inputs keep their declared
    /// shapes (for tools that are about to rewrite those declarations).
    pub ignore_declared_facts: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            input_shapes: Vec::new(),
            optimize: true,
            threads: 1,
            max_tensor_bytes: DEFAULT_MAX_TENSOR_BYTES,
            ignore_declared_facts: false,
        }
    }
}

/// A declared dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Symbolic(s) => write!(f, "{s}"),
        }
    }
}

pub fn format_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A graph input or output: its declared type and shape, and the shape we run it at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    pub declared: Vec<Dim>,
    pub shape: Vec<usize>,
}

/// One ONNX node as far as profiling and MAC counting need it.
#[derive(Debug, Clone)]
pub struct OnnxNode {
    /// The node's name, or its first output's name when the export left it empty (as tract
    /// and Netron do), so it can be matched against tract's node names.
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub int_attrs: HashMap<String, i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadTimings {
    /// Reading and decoding the protobuf, translating it to tract's graph.
    pub load_ms: f64,
    /// Shape and type inference with the fixed input shapes.
    pub typing_ms: f64,
    /// tract's optimiser and planning.
    pub optimize_ms: f64,
}

pub struct LoadedModel {
    pub path: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
    pub opset: i64,
    pub producer: String,
    pub nodes: Vec<OnnxNode>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Every named tensor's shape after type inference (ONNX tensor name → dims).
    pub tensor_shapes: HashMap<String, Vec<usize>>,
    pub plan: Arc<TypedRunnableModel>,
    pub timings: LoadTimings,
    pub optimized: bool,
    pub threads: usize,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Decode an ONNX model with tract's own protobuf types (no protobuf writer needed on the
/// board).
pub fn decode_proto(path: &Path, bytes: &[u8]) -> Result<pb::ModelProto> {
    if bytes.is_empty() {
        return Err(RuntimeError::NotOnnx {
            path: path.into(),
            reason: "file is empty".into(),
        });
    }
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| RuntimeError::NotOnnx {
            path: path.into(),
            reason: format!("protobuf decoding failed: {}", one_line(&e)),
        })?;
    if proto.graph.is_none() {
        return Err(RuntimeError::NotOnnx {
            path: path.into(),
            reason: "the file decodes but holds no graph".into(),
        });
    }
    Ok(proto)
}

/// The display name convention shared with tract (it lives with the checks, which run first).
pub use crate::graph_check::node_display_name;

fn onnx_nodes(graph: &pb::GraphProto) -> Vec<OnnxNode> {
    graph
        .node
        .iter()
        .enumerate()
        .map(|(i, n)| OnnxNode {
            name: node_display_name(n, i),
            op_type: n.op_type.clone(),
            domain: n.domain.clone(),
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            int_attrs: n
                .attribute
                .iter()
                .filter(|a| a.r#type == pb::attribute_proto::AttributeType::Int as i32)
                .map(|a| (a.name.clone(), a.i))
                .collect(),
        })
        .collect()
}

pub fn dtype_name(elem_type: i32) -> String {
    pb::tensor_proto::DataType::try_from(elem_type)
        .map(|d| format!("{d:?}").to_lowercase())
        .unwrap_or_else(|_| format!("type{elem_type}"))
}

fn datum_type_of(elem_type: i32) -> Option<DatumType> {
    pb::tensor_proto::DataType::try_from(elem_type)
        .ok()
        .and_then(|d| DatumType::try_from(d).ok())
}

pub fn declared_dims(vi: &pb::ValueInfoProto) -> (i32, Vec<Dim>) {
    let Some(pb::type_proto::Value::TensorType(tt)) =
        vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return (0, Vec::new());
    };
    let dims = tt
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => {
                        Dim::Fixed(*v as usize)
                    }
                    Some(pb::tensor_shape_proto::dimension::Value::DimParam(p))
                        if !p.is_empty() =>
                    {
                        Dim::Symbolic(p.clone())
                    }
                    _ => Dim::Symbolic("?".into()),
                })
                .collect()
        })
        .unwrap_or_default();
    (tt.elem_type, dims)
}

/// Graph inputs that are real inputs (not initializers listed as inputs, as old exports do).
fn true_inputs(graph: &pb::GraphProto) -> Vec<&pb::ValueInfoProto> {
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect()
}

/// Decide the shape each input runs at: user shapes by name, then positionally, then the
/// declared shape (a lone symbolic batch dimension defaults to 1).
pub fn resolve_input_shapes(
    path: &Path,
    declared: &[(String, Vec<Dim>)],
    user: &[InputShape],
) -> Result<Vec<Vec<usize>>> {
    let names: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
    let mut chosen: Vec<Option<Vec<usize>>> = vec![None; declared.len()];
    let mut positional = Vec::new();
    for s in user {
        match &s.name {
            Some(n) => {
                let ix = names
                    .iter()
                    .position(|x| x == n)
                    .ok_or_else(|| RuntimeError::Input {
                        path: path.into(),
                        input: n.clone(),
                        reason: format!(
                            "no such input; the model's inputs are: {}",
                            names.join(", ")
                        ),
                    })?;
                chosen[ix] = Some(s.dims.clone());
            }
            None => positional.push(s.dims.clone()),
        }
    }
    let mut positional = positional.into_iter();
    for slot in chosen.iter_mut() {
        if slot.is_none() {
            *slot = positional.next();
        }
    }
    if positional.next().is_some() {
        return Err(RuntimeError::Input {
            path: path.into(),
            input: "(unnamed)".into(),
            reason: format!(
                "more --input-shape values than inputs; the model's inputs are: {}",
                names.join(", ")
            ),
        });
    }
    let mut out = Vec::new();
    for ((name, dims), chosen) in declared.iter().zip(chosen) {
        let shape = match chosen {
            Some(user) => {
                if !dims.is_empty() && dims.len() != user.len() {
                    return Err(RuntimeError::Input {
                        path: path.into(),
                        input: name.clone(),
                        reason: format!(
                            "declared with rank {} {}, but the given shape has rank {}",
                            dims.len(),
                            format_dims(dims),
                            user.len()
                        ),
                    });
                }
                for (axis, (d, u)) in dims.iter().zip(&user).enumerate() {
                    if let Dim::Fixed(f) = d {
                        if f != u {
                            return Err(RuntimeError::Input {
                                path: path.into(),
                                input: name.clone(),
                                reason: format!(
                                    "axis {axis} is fixed to {f} in the model {}, the given shape says {u}",
                                    format_dims(dims)
                                ),
                            });
                        }
                    }
                }
                user
            }
            None => {
                let symbolic: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| matches!(d, Dim::Symbolic(_)))
                    .map(|(i, _)| i)
                    .collect();
                if dims.is_empty() || symbolic.iter().any(|&axis| axis != 0) {
                    return Err(RuntimeError::Input {
                        path: path.into(),
                        input: name.clone(),
                        reason: format!(
                            "declared shape {} is not fixed; give one with --input-shape {name}=D0,D1,...",
                            format_dims(dims)
                        ),
                    });
                }
                dims.iter()
                    .map(|d| match d {
                        Dim::Fixed(f) => *f,
                        Dim::Symbolic(_) => 1,
                    })
                    .collect()
            }
        };
        out.push(shape);
    }
    Ok(out)
}

pub fn file_sha256(bytes: &[u8]) -> String {
    crate::fsutil::sha256_hex(bytes)
}

/// A model parsed and typed at fixed input shapes, before tract's optimiser: what `inspect`
/// and shape queries need, and the first half of [`LoadedModel::load`].
pub struct TypedOnnx {
    pub path: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
    pub opset: i64,
    pub producer: String,
    pub nodes: Vec<OnnxNode>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub tensor_shapes: HashMap<String, Vec<usize>>,
    pub typed: TypedModel,
    pub timings: LoadTimings,
}

thread_local! {
    /// Set while [`guarded`] runs a stage: its panics become errors, so the hook stays quiet.
    static IN_GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keep the default panic message (and backtrace) for real bugs, but stay quiet for panics
/// that [`guarded`] turns into a one-line error. Binaries call this once at start.
pub fn install_quiet_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_GUARD.with(|g| g.get()) {
            previous(info);
        }
    }));
}

/// Run one of tract's stages with a panic turned into an error naming the model and stage:
/// the last line of defence for semantically invalid graphs that tract's analysis does not
/// expect (a zero stride, a pad list of the wrong length). With `panic = "abort"` (the board
/// profile) a panic still ends the process; the host builds unwind and report it.
fn guarded<T>(path: &Path, stage: &'static str, f: impl FnOnce() -> TractResult<T>) -> Result<T> {
    IN_GUARD.with(|g| g.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(false));
    match outcome {
        Ok(r) => r.map_err(|e| RuntimeError::tract(path, stage, e)),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(RuntimeError::Tract {
                path: path.into(),
                stage,
                reason: format!("tract cannot analyse this model (invalid attributes?): {what}"),
            })
        }
    }
}

/// Seconds tract's typing may take before a load gives up: `EDGESLIM_TYPING_DEADLINE_S`
/// (0: no deadline), 300 by default. A 200k-node chain types in about 100 s here (tract's
/// `wire_node` is quadratic), so the default leaves real models room.
pub const DEFAULT_TYPING_DEADLINE_S: u64 = 300;

fn typing_deadline() -> Option<std::time::Duration> {
    let secs = std::env::var("EDGESLIM_TYPING_DEADLINE_S")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_TYPING_DEADLINE_S);
    (secs > 0).then(|| std::time::Duration::from_secs(secs))
}

/// Type the model on a thread of its own and give up after `deadline`: a model whose shapes
/// contradict each other further down can keep tract's symbolic-dimension solver busy for
/// minutes (PP-OCR cls with one Conv's pads set to [0, 0, 3, 0]). The load then fails with
/// one line; the abandoned thread runs on until the process exits (threads cannot be
/// cancelled), which for the command-line tools is right after the error.
fn type_with_deadline(
    path: &Path,
    model: InferenceModel,
    deadline: Option<std::time::Duration>,
) -> Result<TypedModel> {
    let Some(deadline) = deadline else {
        return guarded(path, "type inference", || model.into_typed());
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    // tract's analysis recurses on deep graphs: the main thread's stack size, not a
    // spawned thread's 2 MiB default.
    std::thread::Builder::new()
        .name("tract-typing".into())
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(guarded(&owned, "type inference", || model.into_typed()));
        })
        .map_err(|e| RuntimeError::io(path, e))?;
    match rx.recv_timeout(deadline) {
        Ok(typed) => typed,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(RuntimeError::Tract {
            path: path.into(),
            stage: "type inference",
            reason: format!(
                "did not finish within {} s: tract's shape solver is stuck, most likely on shapes \
                 that contradict each other (set EDGESLIM_TYPING_DEADLINE_S to allow more, 0 \
                 for no limit)",
                deadline.as_secs()
            ),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(RuntimeError::Tract {
            path: path.into(),
            stage: "type inference",
            reason: "the typing thread ended without an answer".into(),
        }),
    }
}

impl TypedOnnx {
    /// Parse and type a model file.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<TypedOnnx> {
        let t_load = Instant::now();
        let bytes = std::fs::read(path).map_err(|e| RuntimeError::io(path, e))?;
        Self::from_bytes(bytes, path, path.parent(), opts, t_load)
    }

    /// Parse and type a model held in memory. `label` names it in messages; `dir` is where
    /// external data files are looked up.
    pub fn from_bytes(
        bytes: Vec<u8>,
        label: &Path,
        dir: Option<&Path>,
        opts: &LoadOptions,
        t_load: Instant,
    ) -> Result<TypedOnnx> {
        let path = label;
        let proto = decode_proto(path, &bytes)?;
        let graph = proto.graph.as_ref().expect("checked in decode_proto");
        let framework = tract_onnx::onnx();
        // Unknown ops: name the first one clearly instead of tract's later type-inference error.
        for (i, n) in graph.node.iter().enumerate() {
            let std_domain = n.domain.is_empty() || n.domain == "ai.onnx";
            if !std_domain || !framework.op_register.0.contains_key(&n.op_type) {
                return Err(RuntimeError::UnsupportedOp {
                    path: path.into(),
                    node: node_display_name(n, i),
                    op: n.op_type.clone(),
                    domain: n.domain.clone(),
                });
            }
        }

        crate::graph_check::check_graph(path, graph, opts.max_tensor_bytes)?;

        let declared_inputs: Vec<(String, i32, Vec<Dim>)> = true_inputs(graph)
            .into_iter()
            .map(|vi| {
                let (et, dims) = declared_dims(vi);
                (vi.name.clone(), et, dims)
            })
            .collect();
        let name_dims: Vec<(String, Vec<Dim>)> = declared_inputs
            .iter()
            .map(|(n, _, d)| (n.clone(), d.clone()))
            .collect();
        let shapes = resolve_input_shapes(path, &name_dims, &opts.input_shapes)?;
        let overridden = opts.ignore_declared_facts
            || name_dims.iter().zip(&shapes).any(|((_, decl), run)| {
                decl.len() != run.len()
                    || decl
                        .iter()
                        .zip(run)
                        .any(|(d, r)| !matches!(d, Dim::Fixed(f) if f == r))
            });
        for ((name, _, _), shape) in declared_inputs.iter().zip(&shapes) {
            check_volume(path, name, shape, 4, opts.max_tensor_bytes)?;
        }

        let framework = framework.with_ignore_value_info(overridden);
        let dir = dir.and_then(|p| p.to_str());
        let parsed = guarded(path, "parsing", || framework.parse(&proto, dir))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(RuntimeError::NotOnnx {
                path: path.into(),
                reason: format!(
                    "tensors used but never produced: {}",
                    parsed.unresolved_inputs.join(", ")
                ),
            });
        }
        let mut model = parsed.model;
        let mut inputs = Vec::new();
        for (ix, ((name, et, declared), shape)) in declared_inputs.iter().zip(&shapes).enumerate() {
            let dt = datum_type_of(*et).unwrap_or(f32::datum_type());
            model
                .set_input_fact(ix, InferenceFact::dt_shape(dt, shape.clone()))
                .map_err(|e| RuntimeError::tract(path, "setting input shapes", e))?;
            inputs.push(TensorSpec {
                name: name.clone(),
                dtype: dtype_name(*et),
                declared: declared.clone(),
                shape: shape.clone(),
            });
        }
        if overridden {
            for ix in 0..model.outputs.len() {
                // An output that is also an input (calibration exposes the input itself) keeps
                // the input fact just set: clearing it would leave the source untyped.
                if model.inputs.contains(&model.outputs[ix]) {
                    continue;
                }
                model
                    .set_output_fact(ix, InferenceFact::default())
                    .map_err(|e| RuntimeError::tract(path, "clearing output facts", e))?;
            }
        }
        let load_ms = ms_since(t_load);

        let t_typing = Instant::now();
        let typed = type_with_deadline(path, model, typing_deadline())?;
        let mut tensor_shapes = HashMap::new();
        for node in typed.nodes() {
            for (slot, out) in node.outputs.iter().enumerate() {
                let outlet = OutletId::new(node.id, slot);
                let label = typed.outlet_label(outlet).unwrap_or(&node.name).to_string();
                let Some(dims) = out.fact.shape.as_concrete() else {
                    continue;
                };
                check_volume(
                    path,
                    &label,
                    dims,
                    out.fact.datum_type.size_of(),
                    opts.max_tensor_bytes,
                )?;
                tensor_shapes.insert(label, dims.to_vec());
            }
        }
        // Initializers by their ONNX names, as the file states them: tract names the typed
        // constant of an unlabelled initializer `NAME.0` when typing folds it, which left the
        // weights of an optimised model (BatchNorm folded into `Conv@0.weight_bnfold`) without
        // a shape and its MACs at 0.
        for t in &graph.initializer {
            if let Ok(dims) = t.dims.iter().map(|&d| usize::try_from(d)).collect() {
                tensor_shapes.insert(t.name.clone(), dims);
            }
        }
        crate::graph_check::check_shapes(path, graph, &tensor_shapes)?;
        let outputs = graph
            .output
            .iter()
            .map(|vi| {
                let (et, declared) = declared_dims(vi);
                TensorSpec {
                    name: vi.name.clone(),
                    dtype: dtype_name(et),
                    shape: tensor_shapes.get(&vi.name).cloned().unwrap_or_default(),
                    declared,
                }
            })
            .collect();
        let typing_ms = ms_since(t_typing);

        let opset = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0);
        Ok(TypedOnnx {
            path: path.to_path_buf(),
            sha256: file_sha256(&bytes),
            size_bytes: bytes.len() as u64,
            opset,
            producer: format!("{} {}", proto.producer_name, proto.producer_version)
                .trim()
                .to_string(),
            nodes: onnx_nodes(graph),
            inputs,
            outputs,
            tensor_shapes,
            typed,
            timings: LoadTimings {
                load_ms,
                typing_ms,
                optimize_ms: 0.0,
            },
        })
    }
}

impl LoadedModel {
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
        Self::from_typed(TypedOnnx::load(path, opts)?, opts)
    }

    /// Load a model held in memory (host tools run graphs they have just edited).
    pub fn from_bytes(
        bytes: Vec<u8>,
        label: &Path,
        dir: Option<&Path>,
        opts: &LoadOptions,
    ) -> Result<LoadedModel> {
        Self::from_typed(
            TypedOnnx::from_bytes(bytes, label, dir, opts, Instant::now())?,
            opts,
        )
    }

    /// Optimise and plan a typed model.
    pub fn from_typed(t: TypedOnnx, opts: &LoadOptions) -> Result<LoadedModel> {
        let path = t.path.as_path();
        let typed = t.typed;
        let t_opt = Instant::now();
        let typed = if opts.optimize {
            guarded(path, "optimisation", || typed.into_optimized())?
        } else {
            guarded(path, "decluttering", || typed.into_decluttered())?
        };
        let run_options = RunOptions {
            executor: Some(executor_for(opts.threads)),
            ..Default::default()
        };
        let plan = guarded(path, "planning", || {
            typed.into_runnable_with_options(&run_options)
        })?;
        let optimize_ms = ms_since(t_opt);

        Ok(LoadedModel {
            path: t.path.clone(),
            sha256: t.sha256,
            size_bytes: t.size_bytes,
            opset: t.opset,
            producer: t.producer,
            nodes: t.nodes,
            inputs: t.inputs,
            outputs: t.outputs,
            tensor_shapes: t.tensor_shapes,
            plan,
            timings: LoadTimings {
                optimize_ms,
                ..t.timings
            },
            optimized: opts.optimize,
            threads: opts.threads.max(1),
        })
    }

    /// Run once. Inputs are in graph-input order.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.check_inputs(&inputs)?;
        let out = self
            .plan
            .run(inputs.into_iter().map(|t| t.into_tvalue()).collect())
            .map_err(|e| RuntimeError::tract(&self.path, "running", e))?;
        Ok(out.into_iter().map(|v| v.into_tensor()).collect())
    }

    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(RuntimeError::Input {
                path: self.path.clone(),
                input: "(all)".into(),
                reason: format!(
                    "the model takes {} inputs, {} given",
                    self.inputs.len(),
                    inputs.len()
                ),
            });
        }
        for (t, spec) in inputs.iter().zip(&self.inputs) {
            if t.shape() != spec.shape.as_slice() {
                return Err(RuntimeError::Input {
                    path: self.path.clone(),
                    input: spec.name.clone(),
                    reason: format!(
                        "tensor has shape {:?}, the model runs at {:?}",
                        t.shape(),
                        spec.shape
                    ),
                });
            }
        }
        Ok(())
    }

    /// The optimised plan's node count and the number of distinct tract op kinds.
    pub fn plan_node_count(&self) -> usize {
        self.plan.model().nodes().len()
    }
}

/// tract's executor for a thread count: one thread runs inline, more use a rayon pool for the
/// matrix products.
pub fn executor_for(threads: usize) -> tract_linalg::multithread::Executor {
    if threads <= 1 {
        tract_linalg::multithread::Executor::SingleThread
    } else {
        tract_linalg::multithread::Executor::multithread(threads)
    }
}

fn check_volume(path: &Path, name: &str, dims: &[usize], elem: usize, limit: u64) -> Result<()> {
    let elements: u128 = dims.iter().map(|&d| d as u128).product();
    let bytes = elements * elem as u128;
    if bytes > limit as u128 {
        return Err(RuntimeError::TooLarge {
            path: path.into(),
            tensor: name.to_string(),
            elements,
            bytes,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(dims: &[&str]) -> Vec<Dim> {
        dims.iter()
            .map(|d| match d.parse::<usize>() {
                Ok(v) => Dim::Fixed(v),
                Err(_) => Dim::Symbolic(d.to_string()),
            })
            .collect()
    }

    #[test]
    fn symbolic_batch_defaults_to_one() {
        let d = vec![("x".to_string(), decl(&["N", "3", "8", "8"]))];
        let s = resolve_input_shapes(Path::new("m.onnx"), &d, &[]).unwrap();
        assert_eq!(s, vec![vec![1, 3, 8, 8]]);
    }

    #[test]
    fn symbolic_spatial_needs_a_user_shape() {
        let d = vec![("x".to_string(), decl(&["N", "3", "H", "W"]))];
        let e = resolve_input_shapes(Path::new("m.onnx"), &d, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--input-shape x="), "{e}");
        let s = resolve_input_shapes(Path::new("m.onnx"), &d, &["1,3,48,192".parse().unwrap()])
            .unwrap();
        assert_eq!(s, vec![vec![1, 3, 48, 192]]);
    }

    #[test]
    fn user_shape_must_fit_fixed_dims_and_names() {
        let d = vec![("x".to_string(), decl(&["1", "3", "H", "W"]))];
        let e = resolve_input_shapes(Path::new("m.onnx"), &d, &["x=1,4,8,8".parse().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("axis 1 is fixed to 3"), "{e}");
        let e = resolve_input_shapes(Path::new("m.onnx"), &d, &["y=1,3,8,8".parse().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("input 'y': no such input"), "{e}");
        let e = resolve_input_shapes(Path::new("m.onnx"), &d, &["x=1,3,8".parse().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 4"), "{e}");
    }
}
