use anyhow::Result;
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim::optimize::{optimize, OptimizeOptions};
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

/// Lossless clean-up: Constant weights to initializers, BatchNorm folded into Conv/Gemm,
/// Identity/Dropout removed, dead nodes and unused weights dropped, contradicting declared
/// shapes fixed.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim optimize ch_ppocr_mobile_v2.0_cls_infer.onnx -o cls-opt.onnx\n  edgeslim optimize ch_PP-OCRv4_det_infer.onnx --outputs p2o.Add.147 -o det-backbone.onnx   # cut\n  edgeslim optimize model.onnx -o model-opt.onnx -v   # list every change"
)]
pub struct Args {
    /// The ONNX model (never overwritten).
    model: PathBuf,
    /// Where to write the optimised model.
    #[arg(short, long)]
    output: PathBuf,
    /// Fix an input's shape in the output model, NAME=D0,D1,...
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    /// Store tensors of at least this many bytes in OUTPUT.data (ONNX external data).
    #[arg(long, value_name = "BYTES")]
    external_data: Option<usize>,
    /// Leave out passes: constants, identity, batchnorm, affine, hardswish, dead, names,
    /// shapes.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Cut the graph: these tensors become the only outputs (comma-separated), e.g. a
    /// detector's backbone stages.
    #[arg(long, value_delimiter = ',', value_name = "TENSORS")]
    outputs: Vec<String>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

pub fn run(a: Args) -> Result<()> {
    let mut model = OnnxModel::load(&a.model)?;
    let nodes_before = model.graph().node.len();
    let reports = optimize(
        &mut model,
        &OptimizeOptions {
            input_shapes: a.input_shapes.clone(),
            skip: a.skip.clone(),
            outputs: a.outputs.clone(),
        },
    )?;
    model.save(
        &a.output,
        &SaveOptions {
            external_data_threshold: a.external_data,
        },
    )?;
    if edgeslim_runtime::json_out::emit(&a.json.dest, &reports)? {
        return Ok(());
    }
    println!("{} -> {}", a.model.display(), a.output.display());
    for r in &reports {
        println!("  {:<44} {}", r.pass, r.count);
        if edgeslim_runtime::process::verbose() > 0 {
            for d in &r.details {
                println!("      {d}");
            }
        }
    }
    println!("  nodes: {nodes_before} -> {}", model.graph().node.len());
    Ok(())
}
