//! `edgeslim-rt run`: one inference on an image or a .npy tensor.

use super::{ModelArgs, PrepArgs};
use anyhow::{bail, Result};
use clap::Args;
use edgeslim_runtime::input::{
    image_to_tensor, open_image, read_npy, tensor_to_f32_vec, write_npy,
};
use edgeslim_runtime::model::{LoadOptions, LoadedModel};
use edgeslim_runtime::tract_onnx::prelude::*;
use edgeslim_runtime::InputShape;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An image (png, jpeg) or a .npy tensor for the first input.
    #[arg(long)]
    input: PathBuf,
    /// Save outputs as .npy (several outputs: OUT.0.npy, OUT.1.npy, ...).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Also save the preprocessed input tensor as .npy (to feed the same bytes elsewhere).
    #[arg(long)]
    save_input: Option<PathBuf>,
    /// How many of the largest values to print per output.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    prep: PrepArgs,
}

fn is_npy(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

pub fn run(a: &RunArgs) -> Result<()> {
    // An image decides a dynamic H×W itself when the user gave no shape.
    let mut model_args_shapes = a.model.input_shapes.clone();
    let image = if is_npy(&a.input) {
        None
    } else {
        Some(open_image(&a.input)?)
    };
    let model = match (a.model.load(), &image) {
        (Ok(m), _) => m,
        (Err(e), Some(img))
            if model_args_shapes.is_empty() && e.to_string().contains("is not fixed") =>
        {
            model_args_shapes.push(InputShape {
                name: None,
                dims: vec![1, 3, img.height() as usize, img.width() as usize],
            });
            let opts = LoadOptions {
                input_shapes: model_args_shapes,
                optimize: !a.model.no_optimize,
                threads: a.model.threads.max(1),
                ..Default::default()
            };
            log::info!("dynamic input: running at the image's own size");
            LoadedModel::load(&a.model.model, &opts)?
        }
        (Err(e), _) => return Err(e),
    };
    if model.inputs.len() != 1 {
        bail!(
            "{}: the model has {} inputs; `run` feeds one (use bench for generated inputs)",
            a.model.model.display(),
            model.inputs.len()
        );
    }
    let spec = &model.inputs[0];
    let tensor = match &image {
        None => read_npy(&a.input)?,
        Some(img) => image_to_tensor(img, &spec.shape, &a.prep.prep()?).map_err(|reason| {
            anyhow::anyhow!("{}: input '{}': {reason}", a.input.display(), spec.name)
        })?,
    };
    if let Some(p) = &a.save_input {
        write_npy(p, &tensor)?;
    }
    let outputs = model.run(vec![tensor])?;
    for (i, (t, spec)) in outputs.iter().zip(&model.outputs).enumerate() {
        print_output(&spec.name, t, a.top);
        if let Some(out) = &a.output {
            let path = if outputs.len() == 1 {
                out.clone()
            } else {
                out.with_extension(format!("{i}.npy"))
            };
            write_npy(&path, t)?;
            println!("  saved {}", path.display());
        }
    }
    Ok(())
}

fn print_output(name: &str, t: &Tensor, top: usize) {
    let Ok(v) = tensor_to_f32_vec(t) else {
        println!("{name}: {:?} {:?}", t.datum_type(), t.shape());
        return;
    };
    let (mn, mx) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{name}: shape {:?}  min {mn:.6}  max {mx:.6}  mean {mean:.6}",
        t.shape()
    );
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    for &i in idx.iter().take(top) {
        println!("  [{i}] {:.6}", v[i]);
    }
}
