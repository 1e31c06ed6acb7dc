//! `edgeslim optimize`: lossless clean-up that real exports need before anything else runs.
//!
//! Each pass is one module with one entry point taking and returning the IR and reporting
//! what it changed. Order matters: constants first (later passes only read initializers),
//! BatchNorm folding before dead-code removal (folding orphans the old weights).

pub mod batchnorm;
pub mod constants;
pub mod dead;
pub mod identity;
pub mod names;
pub mod shapes;

use crate::onnx::OnnxModel;
use crate::Result;
use edgeslim_runtime::InputShape;

#[derive(Debug, Clone, Default)]
pub struct OptimizeOptions {
    /// Fix these input shapes in the output model (and the output shapes they imply).
    pub input_shapes: Vec<InputShape>,
    /// Passes to leave out, by key (see [`PASSES`]).
    pub skip: Vec<String>,
}

/// Pass keys for `--skip`, in the order they run.
pub const PASSES: [&str; 6] = [
    "constants",
    "identity",
    "batchnorm",
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
        return Err(crate::Error::Usage(format!(
            "unknown pass '{bad}' in --skip; passes are: {}",
            PASSES.join(", ")
        )));
    }
    let mut reports = Vec::new();
    for key in PASSES {
        if opts.skip.iter().any(|s| s == key) {
            continue;
        }
        reports.push(match key {
            "constants" => constants::constants_to_initializers(model)?,
            "identity" => identity::remove_identities(model)?,
            "batchnorm" => batchnorm::fold_batchnorms(model)?,
            "dead" => dead::remove_dead(model)?,
            "names" => names::name_unnamed_nodes(model),
            _ => shapes::fix_shapes(model, &opts.input_shapes)?,
        });
    }
    model.topo_sort()?;
    model.validate_references()?;
    Ok(reports)
}
