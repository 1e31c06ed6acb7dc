//! The exported detector: ONE ONNX graph, image in, score (and map) out, thresholds and
//! normalisation in its metadata. Any engine runs it; nothing else travels with it.
//!
//! Per level l with feature tensor T [1, C, h, w], whitening W = L⁻ᵀ and mean μ:
//!   image: GlobalAveragePool → Flatten → Sub μ → MatMul W → Mul (square) → MatMul 1ᵏ → Sqrt
//!   map:   Transpose to [1, h, w, C] → Sub μ → MatMul W → square → MatMul 1ᵏ → Sqrt
//!          → Transpose to [1, 1, h, w] → Resize (bilinear, half_pixel) to [1, 1, H, W]
//! and the levels are added. With one Gaussian per position (P = h·w positions), the map is
//!   Transpose → Reshape [P, 1, C] → Sub μ [P, 1, C] → MatMul W [P, C, C] (batched) → square →
//!   MatMul 1ᵏ → Sqrt → Reshape [1, 1, h, w] → Resize,
//! and with the map-max image score, the score is ReduceMax of the summed map. Summing through a MatMul with a ones vector (rather than
//! ReduceSum) keeps the graph valid for every opset the backbone may use: ReduceSum moved its
//! axes from an attribute to an input at opset 13.

use super::fit::Detector;
use crate::Result;
use edgeslim_onnx::builder::{value_info, D};
use edgeslim_onnx::{node, OnnxModel, Tensor};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::NodeProto;

struct Emitter<'a> {
    model: &'a mut OnnxModel,
    nodes: Vec<NodeProto>,
    taken: std::collections::HashSet<String>,
}

impl Emitter<'_> {
    fn fresh(&mut self, base: &str) -> String {
        let n = edgeslim_onnx::model::fresh_name_in(&self.taken, base);
        self.taken.insert(n.clone());
        n
    }

    fn init(&mut self, base: &str, t: Tensor) -> String {
        let n = self.fresh(base);
        self.model.set_initializer(&n, &t);
        n
    }

    fn op(
        &mut self,
        op: &str,
        base: &str,
        inputs: &[&str],
        attrs: Vec<onnx_protobuf::AttributeProto>,
    ) -> String {
        let out = self.fresh(base);
        self.nodes
            .push(node::make(op, inputs, &[&out], &out, attrs));
        out
    }

    /// sqrt(‖(x − μ)·W‖²) over the last axis, keeping it as size 1.
    fn mahalanobis(
        &mut self,
        prefix: &str,
        x: &str,
        mean: &[f64],
        w: &[f64],
        k: usize,
    ) -> Result<String> {
        let mu = self.init(
            &format!("{prefix}.mean"),
            Tensor::f32(vec![k], mean.iter().map(|&v| v as f32).collect())?,
        );
        let wt = self.init(
            &format!("{prefix}.whitening"),
            Tensor::f32(vec![k, k], w.iter().map(|&v| v as f32).collect())?,
        );
        let ones = self.init(
            &format!("{prefix}.ones"),
            Tensor::f32(vec![k, 1], vec![1.0; k])?,
        );
        let d = self.op("Sub", &format!("{prefix}.centred"), &[x, &mu], vec![]);
        let z = self.op("MatMul", &format!("{prefix}.whitened"), &[&d, &wt], vec![]);
        let z2 = self.op("Mul", &format!("{prefix}.squared"), &[&z, &z], vec![]);
        let s = self.op("MatMul", &format!("{prefix}.d2"), &[&z2, &ones], vec![]);
        Ok(self.op("Sqrt", &format!("{prefix}.distance"), &[&s], vec![]))
    }
}

impl Emitter<'_> {
    /// Per-position distances of `x_nhwc` [1, h, w, C] under `gaussians` (one per position,
    /// row-major): [1, 1, h, w].
    fn per_position(
        &mut self,
        prefix: &str,
        x_nhwc: &str,
        gaussians: &[(crate::gaussian::Gaussian, Vec<f64>)],
        k: usize,
        h: usize,
        w: usize,
    ) -> Result<String> {
        let p = h * w;
        let mut mean = Vec::with_capacity(p * k);
        let mut white = Vec::with_capacity(p * k * k);
        for (g, _) in gaussians {
            mean.extend(g.mean.iter().map(|&v| v as f32));
            white.extend(g.whitening.iter().map(|&v| v as f32));
        }
        let rows = self.init(
            &format!("{prefix}.rows"),
            Tensor::i64(vec![3], vec![p as i64, 1, k as i64])?,
        );
        let mu = self.init(&format!("{prefix}.mean"), Tensor::f32(vec![p, 1, k], mean)?);
        let wt = self.init(
            &format!("{prefix}.whitening"),
            Tensor::f32(vec![p, k, k], white)?,
        );
        let ones = self.init(
            &format!("{prefix}.ones"),
            Tensor::f32(vec![k, 1], vec![1.0; k])?,
        );
        let grid = self.init(
            &format!("{prefix}.grid"),
            Tensor::i64(vec![4], vec![1, 1, h as i64, w as i64])?,
        );
        let r = self.op(
            "Reshape",
            &format!("{prefix}.per_position"),
            &[x_nhwc, &rows],
            vec![],
        );
        let d = self.op("Sub", &format!("{prefix}.centred"), &[&r, &mu], vec![]);
        let z = self.op("MatMul", &format!("{prefix}.whitened"), &[&d, &wt], vec![]);
        let z2 = self.op("Mul", &format!("{prefix}.squared"), &[&z, &z], vec![]);
        let s = self.op("MatMul", &format!("{prefix}.d2"), &[&z2, &ones], vec![]);
        let dist = self.op("Sqrt", &format!("{prefix}.distance"), &[&s], vec![]);
        Ok(self.op(
            "Reshape",
            &format!("{prefix}.nchw"),
            &[&dist, &grid],
            vec![],
        ))
    }
}

/// Sum tensors with a chain of Adds (Sum would do, but Add is the op every engine fuses).
fn add_all(e: &mut Emitter, parts: &[String], base: &str) -> String {
    let mut acc = parts[0].clone();
    for p in &parts[1..] {
        acc = e.op("Add", base, &[&acc, p], vec![]);
    }
    acc
}

/// Build the detector graph with its metadata.
pub fn export(det: &Detector) -> Result<OnnxModel> {
    let mut model = det.trunk.model.clone();
    let taken = model.used_names();
    let (h, w) = (det.meta.height as i64, det.meta.width as i64);
    let mut e = Emitter {
        model: &mut model,
        nodes: Vec::new(),
        taken,
    };
    let mut image_parts = Vec::new();
    let mut map_parts = Vec::new();
    for (l, (lf, name)) in det.levels.iter().zip(&det.trunk.layers).enumerate() {
        let k = lf.image.k;
        let p = format!("anomaly.l{l}");
        let gap = e.op("GlobalAveragePool", &format!("{p}.pooled"), &[name], vec![]);
        let flat = e.op(
            "Flatten",
            &format!("{p}.flat"),
            &[&gap],
            vec![node::int("axis", 1)],
        );
        image_parts.push(e.mahalanobis(
            &format!("{p}.image"),
            &flat,
            &lf.image.mean,
            &lf.image.whitening,
            k,
        )?);
        let map_gaussians = match (&lf.positions, &lf.map) {
            (Some(ps), _) => Some(Ok(ps)),
            (None, Some(g)) => Some(Err(g)),
            (None, None) => None,
        };
        if let Some(gaussians) = map_gaussians {
            let t = e.op(
                "Transpose",
                &format!("{p}.nhwc"),
                &[name],
                vec![node::ints("perm", &[0, 2, 3, 1])],
            );
            let nchw = match gaussians {
                Ok(ps) => {
                    let [_, gh, gw] = det.trunk.shapes[l];
                    e.per_position(&format!("{p}.map"), &t, ps, k, gh, gw)?
                }
                Err(g) => {
                    let d = e.mahalanobis(&format!("{p}.map"), &t, &g.mean, &g.whitening, k)?;
                    e.op(
                        "Transpose",
                        &format!("{p}.map.nchw"),
                        &[&d],
                        vec![node::ints("perm", &[0, 3, 1, 2])],
                    )
                }
            };
            let roi = e.init(&format!("{p}.roi"), Tensor::f32(vec![0], vec![])?);
            let scales = e.init(&format!("{p}.scales"), Tensor::f32(vec![0], vec![])?);
            let sizes = e.init(
                &format!("{p}.sizes"),
                Tensor::i64(vec![4], vec![1, 1, h, w])?,
            );
            let up = e.op(
                "Resize",
                &format!("{p}.map.up"),
                &[&nchw, &roi, &scales, &sizes],
                vec![
                    node::string("mode", "linear"),
                    node::string("coordinate_transformation_mode", "half_pixel"),
                ],
            );
            map_parts.push(up);
        }
    }
    let map_sum = (!map_parts.is_empty()).then(|| add_all(&mut e, &map_parts, "anomaly.map_sum"));
    // [1, 1] per level → summed → [1]; or the map's maximum.
    let total = match (det.image_score, &map_sum) {
        (crate::fit::ImageScore::MapMax, Some(m)) => e.op(
            "ReduceMax",
            "anomaly.map_max",
            &[m],
            vec![node::int("keepdims", 0)],
        ),
        _ => add_all(&mut e, &image_parts, "anomaly.score_sum"),
    };
    let shape1 = e.init("anomaly.shape1", Tensor::i64(vec![1], vec![1])?);
    let score_name = det.meta.score_output.clone();
    e.nodes.push(node::make(
        "Reshape",
        &[&total, &shape1],
        &[&score_name],
        "anomaly.score",
        vec![],
    ));
    let map_name = det.meta.map_output.clone();
    if let (Some(mn), Some(sum)) = (&map_name, &map_sum) {
        e.nodes
            .push(node::make("Identity", &[sum], &[mn], "anomaly.map", vec![]));
    }
    let nodes = std::mem::take(&mut e.nodes);
    let g = model.graph_mut();
    g.node.extend(nodes);
    g.output.clear();
    g.output
        .push(value_info(&score_name, DataType::FLOAT, Some(&[D::N(1)])));
    if let Some(mn) = &map_name {
        g.output.push(value_info(
            mn,
            DataType::FLOAT,
            Some(&[D::N(1), D::N(1), D::N(h), D::N(w)]),
        ));
    }
    for (k, v) in det.meta.to_props() {
        model.set_metadata(&k, &v);
    }
    model.proto.doc_string =
        format!(
        "edgeslim anomaly detector: Gaussian (Mahalanobis) on {} features, {} levels; input '{}' \
         [1,3,{h},{w}] RGB in [0,1]; outputs '{}'{}; thresholds in metadata '{}'",
        det.meta.backbone,
        det.levels.len(),
        det.meta.input,
        score_name,
        map_name.as_deref().map(|m| format!(", '{m}'")).unwrap_or_default(),
        edgeslim_runtime::inspect::meta::META_KEY
    );
    model.path = None;
    model.topo_sort()?;
    model.validate_references()?;
    Ok(model)
}
