//! `edgeslim optimize`: lossless clean-up that real exports need before anything else runs.
//!
//! Each pass is one module with one entry point taking and returning the IR and reporting
//! what it changed. Order matters: constants first (later passes only read initializers),
//! BatchNorm folding before dead-code removal (folding orphans the old weights).
//!
//! Two passes exist for the board's engine rather than for correctness: `affine` and
//! `hardswish` rewrite what exporters spell out in several element-wise ops into forms tract
//! fuses into its kernels or runs in one pass (measured in docs/results/speed.md). They are
//! as lossless as BatchNorm folding: the arithmetic is reordered, the function is the same.

pub mod affine;
pub mod batchnorm;
pub mod constants;
pub mod dead;
pub mod hardswish;
pub mod identity;
pub mod names;
pub mod shapes;

use crate::OnnxModel;
use crate::Result;
use edgeslim_runtime::InputShape;

#[derive(Debug, Clone, Default)]
pub struct OptimizeOptions {
    /// Fix these input shapes in the output model (and the output shapes they imply).
    pub input_shapes: Vec<InputShape>,
    /// Passes to leave out, by key (see [`PASSES`]).
    pub skip: Vec<String>,
    /// Cut the graph: these tensors become its only outputs and what only the old outputs
    /// needed is dropped (a backbone taken out of a detector, for instance).
    pub outputs: Vec<String>,
}

/// Pass keys for `--skip`, in the order they run.
pub const PASSES: [&str; 8] = [
    "constants",
    "identity",
    "batchnorm",
    "affine",
    "hardswish",
    "dead",
    "names",
    "shapes",
];

/// What one pass did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PassReport {
    pub pass: &'static str,
    pub count: usize,
    /// One line per change, for `--verbose` and the JSON.
    pub details: Vec<String>,
}

impl PassReport {
    pub fn new(pass: &'static str) -> PassReport {
        PassReport {
            pass,
            count: 0,
            details: Vec::new(),
        }
    }

    pub fn note(&mut self, detail: String) {
        self.count += 1;
        self.details.push(detail);
    }
}

/// Run every pass in order; the model stays a valid ONNX graph after each.
pub fn optimize(model: &mut OnnxModel, opts: &OptimizeOptions) -> Result<Vec<PassReport>> {
    if let Some(bad) = opts.skip.iter().find(|s| !PASSES.contains(&s.as_str())) {
        return Err(crate::Error::option_value(
            "skip",
            bad,
            format!("unknown pass; passes are: {}", PASSES.join(", ")),
        ));
    }
    let mut reports = Vec::new();
    if !opts.outputs.is_empty() {
        reports.push(cut_at(model, &opts.outputs)?);
    }
    for key in PASSES {
        if opts.skip.iter().any(|s| s == key) {
            continue;
        }
        reports.push(match key {
            "constants" => constants::constants_to_initializers(model)?,
            "identity" => identity::remove_identities(model)?,
            "batchnorm" => batchnorm::fold_batchnorms(model)?,
            "affine" => affine::fold_channel_affine(model)?,
            "hardswish" => {
                // Ranks let a model with Softmax move to opset 14: tract's where it can type
                // the model, else what the model declares; without either the pass keeps the
                // opset and writes the opset-6 form.
                let mut ranks = crate::opset::declared_ranks(model);
                if let Ok(typed) = crate::opset::tensor_ranks(model, &opts.input_shapes) {
                    ranks.extend(typed);
                }
                hardswish::fuse_hardswish(model, Some(&ranks))?
            }
            "dead" => dead::remove_dead(model)?,
            "names" => names::name_unnamed_nodes(model),
            _ => shapes::fix_shapes(model, &opts.input_shapes)?,
        });
    }
    model.topo_sort()?;
    model.validate_references()?;
    Ok(reports)
}

/// Make `outputs` the graph's only outputs (they must be produced by nodes or be inputs) and
/// drop everything only the previous outputs needed. Names keep their meaning: later passes
/// preserve the names of graph outputs.
pub fn cut_at(model: &mut OnnxModel, outputs: &[String]) -> Result<PassReport> {
    let mut report = PassReport::new("graph cut at the named tensors");
    let producers = model.producers();
    let inputs = model.graph_input_names();
    for o in outputs {
        if !producers.contains_key(o) && !inputs.contains(o) {
            return Err(crate::Error::option(
                "outputs",
                format!(
                    "'{o}' is not a tensor of {} (names: `edgeslim inspect {}`)",
                    model.label(),
                    model.label()
                ),
            ));
        }
    }
    let g = model.graph_mut();
    let before = g.output.len();
    g.output.clear();
    for o in outputs {
        g.output.push(crate::builder::value_info(
            o,
            onnx_protobuf::tensor_proto::DataType::FLOAT,
            None,
        ));
    }
    g.value_info.clear();
    report.note(format!(
        "{before} outputs -> {}: {}",
        outputs.len(),
        outputs.join(", ")
    ));
    let dead = dead::remove_dead(model)?;
    for d in dead.details {
        report.note(d);
    }
    Ok(report)
}
