//! The backbone trunk: the user's ONNX backbone cut after the chosen layers, with the image
//! normalisation in front, so that detector inputs are plain RGB in [0, 1].
//!
//! Features are read with tract by making the chosen intermediate tensors graph outputs.
//! The same trunk is the first half of the exported detector, so fit-time features and the
//! detector's own features come from one graph.

use crate::{Error, Result};
use edgeslim_onnx::builder::{value_info, D};
use edgeslim_onnx::optimize::{dead::remove_dead, optimize, OptimizeOptions};
use edgeslim_onnx::{node, OnnxModel, Tensor};
use edgeslim_runtime::input::tensor_to_f32_vec;
use edgeslim_runtime::{InputShape, LoadOptions, LoadedModel};
use onnx_protobuf::tensor_proto::DataType;
use std::path::{Path, PathBuf};

/// Default layers of the PP-OCRv4 detector's backbone (PPLCNetV3): the outputs of stages
/// 2, 3 and 4 (48, 96 and 192 channels at strides 4, 8 and 16), the tensors its neck reads.
/// Like PaDiM's ResNet layers 1–3: early enough to be generic (edges, texture statistics),
/// late enough to carry context; stage 5 (384 channels, stride 32) is left out as the most
/// text-specific and too coarse for maps of small parts.
pub const PPOCR_LAYERS: [&str; 3] = ["p2o.Add.43", "p2o.Add.71", "p2o.Add.147"];

/// How the backbone wants its input, applied inside the graph to RGB in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Prep {
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Feed channels as BGR (OpenCV-trained models such as PP-OCR).
    pub bgr: bool,
}

impl Prep {
    /// What PP-OCR's detector was trained with: ImageNet statistics on BGR channels.
    pub fn ppocr() -> Prep {
        Prep {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            bgr: true,
        }
    }
}

/// The backbone up to the chosen layers with the preprocessing in front.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub model: OnnxModel,
    /// The new graph input: [1, 3, H, W] RGB in [0, 1].
    pub input: String,
    pub layers: Vec<String>,
    pub height: usize,
    pub width: usize,
    /// Each layer's [C, h, w] at this input size.
    pub shapes: Vec<[usize; 3]>,
    pub backbone: PathBuf,
    pub backbone_sha256: String,
}

/// Levenshtein distance, for suggesting layer names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != *cb) as usize)
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The `n` names closest to `want`.
pub fn close_matches<'a>(
    want: &str,
    names: impl Iterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = names.map(|c| (edit_distance(want, c), c)).collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn sha256_file(path: &Path) -> Result<String> {
    edgeslim_data::assets::file_sha256(path)
        .map(|(_, h)| h)
        .map_err(|e| Error::io(path, e))
}

impl Trunk {
    /// Build the trunk of `backbone` at input size `height`×`width`.
    pub fn build(
        backbone: &Path,
        layers: &[String],
        prep: &Prep,
        height: usize,
        width: usize,
    ) -> Result<Trunk> {
        let mut model = OnnxModel::load(backbone)?;
        let inputs: Vec<String> = model.true_inputs().iter().map(|i| i.name.clone()).collect();
        let [x] = inputs.as_slice() else {
            return Err(Error::Invalid(format!(
                "{}: a backbone takes one image input, this model has {}: {}",
                backbone.display(),
                inputs.len(),
                inputs.join(", ")
            )));
        };
        let x = x.clone();
        if layers.is_empty() {
            return Err(Error::option("layers", "name at least one tensor"));
        }
        let produced: Vec<String> = model
            .graph()
            .node
            .iter()
            .flat_map(|n| n.output.iter().cloned())
            .filter(|o| !o.is_empty())
            .collect();
        for l in layers {
            if !produced.iter().any(|p| p == l) {
                let near = close_matches(l, produced.iter().map(|s| s.as_str()), 5);
                return Err(Error::option("layers", format!(
                    "'{l}' is not a tensor of {}; closest names: {} (all names: `edgeslim inspect {}`)",
                    backbone.display(),
                    near.join(", "),
                    backbone.display()
                )));
            }
        }
        // Clean the export first (Constant weights, BatchNorm): lossless, and it gives tract
        // and the exported detector a plain graph.
        optimize(
            &mut model,
            &OptimizeOptions {
                input_shapes: vec![InputShape {
                    name: Some(x.clone()),
                    dims: vec![1, 3, height, width],
                }],
                ..Default::default()
            },
        )?;
        // Only the layers are outputs now; everything after them is dead.
        let g = model.graph_mut();
        g.output.clear();
        for l in layers {
            g.output.push(value_info(l, DataType::FLOAT, None));
        }
        g.value_info.clear();
        remove_dead(&mut model)?;
        for l in layers {
            if !model.producers().contains_key(l) {
                return Err(Error::option(
                    "layers",
                    format!(
                        "'{l}' disappeared when the backbone was cleaned up (folded into \
                     another node); pick the tensor after it"
                    ),
                ));
            }
        }
        let input = model.fresh_name("image");
        prepend_prep(&mut model, &input, &x, prep, height, width);
        model.topo_sort()?;
        model.validate_references()?;

        let loaded = load(&model, "(trunk)")?;
        let mut shapes = Vec::new();
        for (l, spec) in layers.iter().zip(&loaded.outputs) {
            match spec.shape.as_slice() {
                [1, c, h, w] => shapes.push([*c, *h, *w]),
                other => {
                    return Err(Error::option(
                        "layers",
                        format!("'{l}' has shape {other:?}; features need a [1, C, H, W] map"),
                    ))
                }
            }
        }
        // Outputs with their shapes, as onnx.checker's full check wants.
        let g = model.graph_mut();
        g.output.clear();
        for (l, s) in layers.iter().zip(&shapes) {
            let dims: Vec<D> = [1, s[0], s[1], s[2]]
                .iter()
                .map(|&d| D::N(d as i64))
                .collect();
            g.output.push(value_info(l, DataType::FLOAT, Some(&dims)));
        }
        Ok(Trunk {
            model,
            input,
            layers: layers.to_vec(),
            height,
            width,
            shapes,
            backbone: backbone.to_path_buf(),
            backbone_sha256: sha256_file(backbone)?,
        })
    }

    /// A tract model that outputs the layers.
    pub fn extractor(&self) -> Result<FeatureExtractor> {
        Ok(FeatureExtractor {
            model: load(&self.model, "(features)")?,
            shapes: self.shapes.clone(),
            height: self.height,
            width: self.width,
        })
    }
}

/// Load an in-memory graph with tract.
pub fn load(model: &OnnxModel, label: &str) -> Result<LoadedModel> {
    Ok(LoadedModel::from_bytes(
        model.to_bytes()?,
        Path::new(label),
        None,
        &LoadOptions::default(),
    )?)
}

/// image [1,3,H,W] RGB in [0,1] → (channel swap) → ·(1/std) + (−mean/std) → backbone input.
fn prepend_prep(model: &mut OnnxModel, input: &str, x: &str, prep: &Prep, h: usize, w: usize) {
    let mut nodes = Vec::new();
    let mut cur = input.to_string();
    let mut inits: Vec<(String, Tensor)> = Vec::new();
    let used = model.used_names();
    let fresh = |base: &str, taken: &mut Vec<String>| {
        let mut all = used.clone();
        all.extend(taken.iter().cloned());
        let n = edgeslim_onnx::model::fresh_name_in(&all, base);
        taken.push(n.clone());
        n
    };
    let mut taken = Vec::new();
    if prep.bgr {
        let idx = fresh("prep.bgr_index", &mut taken);
        let out = fresh("prep.bgr", &mut taken);
        inits.push((
            idx.clone(),
            Tensor::i64(vec![3], vec![2, 1, 0]).expect("3 values"),
        ));
        nodes.push(node::make(
            "Gather",
            &[&cur, &idx],
            &[&out],
            &out,
            vec![node::int("axis", 1)],
        ));
        cur = out;
    }
    let scale: Vec<f32> = prep.std.iter().map(|s| 1.0 / s).collect();
    let bias: Vec<f32> = prep
        .mean
        .iter()
        .zip(&prep.std)
        .map(|(m, s)| -m / s)
        .collect();
    let scale_n = fresh("prep.scale", &mut taken);
    let bias_n = fresh("prep.bias", &mut taken);
    let scaled = fresh("prep.scaled", &mut taken);
    inits.push((
        scale_n.clone(),
        Tensor::f32(vec![1, 3, 1, 1], scale).expect("3 values"),
    ));
    inits.push((
        bias_n.clone(),
        Tensor::f32(vec![1, 3, 1, 1], bias).expect("3 values"),
    ));
    nodes.push(node::make(
        "Mul",
        &[&cur, &scale_n],
        &[&scaled],
        &scaled,
        vec![],
    ));
    // A fresh node name too: a fine-tuned trunk already has a `prep.normalise`.
    let norm_node = fresh("prep.normalise", &mut taken);
    nodes.push(node::make(
        "Add",
        &[&scaled, &bias_n],
        &[x],
        &norm_node,
        vec![],
    ));
    for (n, t) in inits {
        model.set_initializer(&n, &t);
    }
    let g = model.graph_mut();
    g.input.retain(|i| i.name != x);
    g.input.insert(
        0,
        value_info(
            input,
            DataType::FLOAT,
            Some(&[D::N(1), D::N(3), D::N(h as i64), D::N(w as i64)]),
        ),
    );
    let rest = std::mem::take(&mut g.node);
    g.node = nodes;
    g.node.extend(rest);
}

/// Feature maps of one image: per level [C, h, w] row-major.
#[derive(Debug, Clone)]
pub struct FeatureMap {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// The global average over locations: the image-level feature.
    pub fn pooled(&self) -> Vec<f64> {
        let hw = self.h * self.w;
        self.data
            .chunks_exact(hw)
            .map(|ch| ch.iter().map(|&v| v as f64).sum::<f64>() / hw as f64)
            .collect()
    }

    /// The feature vector at location (y, x).
    pub fn at(&self, y: usize, x: usize, out: &mut Vec<f64>) {
        out.clear();
        let hw = self.h * self.w;
        let o = y * self.w + x;
        out.extend((0..self.c).map(|c| self.data[c * hw + o] as f64));
    }
}

pub struct FeatureExtractor {
    model: LoadedModel,
    pub shapes: Vec<[usize; 3]>,
    pub height: usize,
    pub width: usize,
}

impl FeatureExtractor {
    /// Features of an RGB image (resized to the trunk's input size like the board does).
    pub fn extract(&self, img: &image::RgbImage) -> Result<Vec<FeatureMap>> {
        let x = edgeslim_runtime::inspect::frame_tensor(img, self.height, self.width);
        let outs = self.model.run(vec![x])?;
        outs.iter()
            .zip(&self.shapes)
            .map(|(t, s)| {
                Ok(FeatureMap {
                    c: s[0],
                    h: s[1],
                    w: s[2],
                    data: tensor_to_f32_vec(t)?,
                })
            })
            .collect()
    }
}
