use anyhow::Result;
use edgeslim::inspect::{inspect, render_text};
use edgeslim::onnx::OnnxModel;
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

/// Show a model's inputs, outputs, opsets, and per node its op, output shape, parameters
/// and MACs.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  edgeslim inspect ch_PP-OCRv4_det_infer.onnx --input-shape x=1,3,640,640"
)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Shape of an input, NAME=D0,D1,... (needed where the model's shape is dynamic).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

pub fn run(a: Args) -> Result<()> {
    let model = OnnxModel::load(&a.model)?;
    let report = inspect(&model, &a.input_shapes)?;
    if !edgeslim_runtime::json_out::emit(&a.json.dest, &report)? {
        print!("{}", render_text(&report));
    }
    Ok(())
}
