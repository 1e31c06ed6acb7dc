//! `edgeslim eval MODEL --task classify --data SPEC`: accuracy, per-class accuracy and the
//! confusion matrix of an image classifier on the held-out split, run in tract (the runtime
//! that ships to boards, independent of the training engine).

use anyhow::Result;
use edgeslim::data::DataSpec;
use edgeslim::train::classify::{evaluate_tract, image_input};
use std::path::Path;

#[derive(serde::Serialize)]
struct Json<'a> {
    model: String,
    data: String,
    split: &'a str,
    #[serde(flatten)]
    report: &'a edgeslim::train::EvalReport,
}

/// `data` is a spec (`mnist`, `folder:DIR`); a plain existing folder counts as `folder:DIR`.
pub fn run(
    model: &Path,
    data: &Path,
    json: &Option<edgeslim_runtime::json_out::JsonDest>,
    seed: u64,
) -> Result<()> {
    let text = data.to_string_lossy();
    let spec: DataSpec = match text.parse() {
        Ok(s) => s,
        Err(_) if data.is_dir() => DataSpec::Folder(data.to_path_buf()),
        Err(e) => return Err(e.into()),
    };
    let m = edgeslim::onnx::OnnxModel::load(model)?;
    let (_, c, h, w) = image_input(&m)?;
    let split = edgeslim::train::zoo::load_data(&spec, Some((c, h, w)), 0.2, seed)?;
    let r = evaluate_tract(model, &split.held_out)?;
    let v = Json {
        model: model.display().to_string(),
        data: spec.to_string(),
        split: &split.split,
        report: &r,
    };
    if edgeslim_runtime::json_out::emit(json, &v)? {
        return Ok(());
    }
    println!(
        "{} on {} (held out: {}):",
        model.display(),
        spec,
        split.split
    );
    print!("{}", r.render_text());
    Ok(())
}
