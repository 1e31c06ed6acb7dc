//! An imported ImageNet backbone as a classifier of a small grayscale data set (MNIST,
//! Animal-MNIST): the transfer tasks of `zoo import --head` and of `edgeslim adapt`. The data
//! set's tensors are upsampled to the backbone's input size, the gray value repeated over RGB
//! and ImageNet-normalised, and a fresh linear head reads the backbone's features: the class
//! token of a ViT (DINOv2), the pooled features of a CNN (MobileNetV2's `features`), or the
//! input of a CNN classifier's own final Gemm (EfficientNet-Lite's ImageNet head, replaced).

use crate::{Error, Result};
use edgeslim_onnx::builder::{value_info, D};
use edgeslim_onnx::optimize::dead::remove_dead;
use edgeslim_onnx::optimize::shapes::declared;
use edgeslim_onnx::{node, OnnxModel, Tensor};
use edgeslim_runtime::model::Dim;
use onnx_protobuf::tensor_proto::DataType;

/// The classifier's input and output names and its head's initializers.
pub const INPUT: &str = "x";
pub const OUTPUT: &str = "logits";
pub const HEAD_WEIGHT: &str = "head.weight";
pub const HEAD_BIAS: &str = "head.bias";

/// How a grayscale data set's tensors were made: `[N, 1, side, side]`, pixels in [0, 1]
/// normalised as `(p − mean) / std`.
#[derive(Debug, Clone, Copy)]
pub struct GrayInput {
    pub side: usize,
    pub mean: f32,
    pub std: f32,
}

/// What the new head reads.
enum Features {
    /// Token 0 of a `[N, T, D]` output (a ViT's class token).
    ClassToken(usize),
    /// A `[N, D]` output.
    Pooled(usize),
    /// The input of the final Gemm (node index), which the new head replaces.
    BeforeGemm(usize, String, usize),
}

/// The backbone `model` (one image input `[1, 3, S, S]`) as a classifier of a grayscale data
/// set: `x [N, 1, side, side]` (the data set's normalised tensors) upsampled bilinearly to
/// S (a whole factor), the gray value repeated over RGB and ImageNet-normalised, and a linear
/// head `logits [N, classes]` at zero (train it, e.g. as a linear probe). `imagenet` is the
/// backbone's per-channel (mean, std). Where the first convolution has no padding (a ViT's
/// patch embedding) the repeat and both normalisations are folded into its weights, which then
/// read one channel; a padded convolution would see the folded offset in its border taps, so
/// there the image is mapped by a per-channel Mul and Add instead (exact either way).
pub fn classifier(
    mut model: OnnxModel,
    input: GrayInput,
    imagenet: ([f32; 3], [f32; 3]),
    classes: usize,
) -> Result<OnnxModel> {
    let label = model.label();
    let bad = |why: String| Error::Invalid(format!("{label}: {why}"));
    // The backbone's own tensors give way to the classifier's names (EfficientNet's ImageNet
    // head already writes `logits`).
    for name in [INPUT, OUTPUT] {
        let g = model.graph();
        let taken = g.node.iter().any(|n| n.output.iter().any(|t| t == name))
            || g.input.iter().any(|i| i.name == name);
        if taken {
            let to = model.fresh_name(&format!("backbone.{name}"));
            model.rename_tensor(name, &to);
            let g = model.graph_mut();
            for v in g.input.iter_mut().chain(g.output.iter_mut()) {
                if v.name == name {
                    v.name = to.clone();
                }
            }
        }
    }
    let images: Vec<_> = model
        .graph()
        .input
        .iter()
        .filter(|i| model.initializer(&i.name).is_none())
        .cloned()
        .collect();
    let [image] = &images[..] else {
        return Err(bad(format!(
            "{} inputs; the gray classifier wraps a backbone with one image input",
            images.len()
        )));
    };
    let image = image.name.clone();
    let size = match declared(&images[0])[..] {
        [_, Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)] if h == w => h,
        ref d => {
            return Err(bad(format!(
                "input '{image}' is {d:?}, not a fixed square RGB image [N, 3, S, S]"
            )))
        }
    };
    if input.side == 0 || !size.is_multiple_of(input.side) || classes == 0 {
        return Err(bad(format!(
            "a {0}×{0} input cannot be upsampled to {size}×{size} by a whole factor (or no classes)",
            input.side
        )));
    }
    let features = features(&model).map_err(bad)?;

    let f = (size / input.side) as f32;
    let scales = model.fresh_name("x.upsample.scales");
    model.set_initializer(&scales, &Tensor::f32(vec![4], vec![1.0, 1.0, f, f])?);
    let up = model.fresh_name("x.upsampled");
    let resize = node::make(
        "Resize",
        &[INPUT, "", &scales],
        &[&up],
        "x.upsample",
        vec![node::string("mode", "linear")],
    );
    // Channel c sees (x·std + mean − μc)/σc = a_c·x + d_c.
    let (mu, sigma) = imagenet;
    let a: Vec<f32> = (0..3).map(|c| input.std / sigma[c]).collect();
    let d: Vec<f32> = (0..3).map(|c| (input.mean - mu[c]) / sigma[c]).collect();
    let mut front = vec![resize];
    match unpadded_first_conv(&model, &image) {
        Some(at) => fold_into_conv(&mut model, at, &a, &d).map_err(bad)?,
        None => {
            let scale = model.fresh_name("x.gray_to_rgb.scale");
            let shift = model.fresh_name("x.gray_to_rgb.shift");
            model.set_initializer(&scale, &Tensor::f32(vec![1, 3, 1, 1], a)?);
            model.set_initializer(&shift, &Tensor::f32(vec![1, 3, 1, 1], d)?);
            let scaled = model.fresh_name("x.rgb_scaled");
            let rgb = model.fresh_name("x.rgb");
            model.replace_uses(&image, &rgb);
            front.push(node::make(
                "Mul",
                &[&up, &scale],
                &[&scaled],
                "x.gray_to_rgb.mul",
                vec![],
            ));
            front.push(node::make(
                "Add",
                &[&scaled, &shift],
                &[&rgb],
                "x.gray_to_rgb.add",
                vec![],
            ));
        }
    }
    // Everything that read the image (the first convolution, a ViT's batch size for the class
    // token) reads the upsampled gray image.
    model.replace_uses(&image, &up);

    let (features_tensor, width) = match &features {
        Features::ClassToken(width) => {
            let zero = model.fresh_name("head.token_index");
            model.set_initializer(&zero, &Tensor::i64(vec![], vec![0])?);
            let out = output_name(&model);
            model.graph_mut().node.push(node::make(
                "Gather",
                &[&out, &zero],
                &["class_token"],
                "head.class_token",
                vec![node::int("axis", 1)],
            ));
            ("class_token".to_string(), *width)
        }
        Features::Pooled(width) => (output_name(&model), *width),
        Features::BeforeGemm(at, x, width) => {
            let name = model.graph().node[*at].name.clone();
            model.graph_mut().node.retain(|n| n.name != name);
            (x.clone(), *width)
        }
    };
    model.set_initializer(
        HEAD_WEIGHT,
        &Tensor::f32(vec![classes, width], vec![0.0; classes * width])?,
    );
    model.set_initializer(HEAD_BIAS, &Tensor::f32(vec![classes], vec![0.0; classes])?);
    let gemm = node::make(
        "Gemm",
        &[&features_tensor, HEAD_WEIGHT, HEAD_BIAS],
        &[OUTPUT],
        "head.linear",
        vec![node::int("transB", 1)],
    );
    let g = model.graph_mut();
    for (i, n) in front.into_iter().enumerate() {
        g.node.insert(i, n);
    }
    g.node.push(gemm);
    g.input.retain(|i| i.name != image);
    g.input.insert(
        0,
        value_info(
            INPUT,
            DataType::FLOAT,
            Some(&[
                D::Sym("N"),
                D::N(1),
                D::N(input.side as i64),
                D::N(input.side as i64),
            ]),
        ),
    );
    g.output.clear();
    g.output.push(value_info(
        OUTPUT,
        DataType::FLOAT,
        Some(&[D::Sym("N"), D::N(classes as i64)]),
    ));
    g.value_info.clear();
    remove_dead(&mut model)?;
    model.topo_sort()?;
    model.validate_references()?;
    Ok(model)
}

fn output_name(model: &OnnxModel) -> String {
    model
        .graph()
        .output
        .first()
        .map(|o| o.name.clone())
        .unwrap_or_default()
}

/// What the head reads, from the backbone's (first) output.
fn features(model: &OnnxModel) -> std::result::Result<Features, String> {
    let out = model
        .graph()
        .output
        .first()
        .ok_or_else(|| "no output".to_string())?;
    if let Some(&at) = model.producers().get(&out.name) {
        let n = &model.graph().node[at];
        if n.op_type == "Gemm" {
            let w = model
                .constant(&n.input[1])
                .ok_or_else(|| format!("the final Gemm '{}' has no constant weight", n.name))?
                .map_err(|e| e.to_string())?;
            let trans_b = node::attr_i(n, "transB").unwrap_or(0) != 0;
            let width = match (w.dims.len(), trans_b) {
                (2, true) => w.dims[1],
                (2, false) => w.dims[0],
                _ => {
                    return Err(format!(
                        "the final Gemm '{}' weight is {:?}",
                        n.name, w.dims
                    ))
                }
            };
            return Ok(Features::BeforeGemm(at, n.input[0].clone(), width));
        }
    }
    match declared(out)[..] {
        [_, _, Dim::Fixed(width)] => Ok(Features::ClassToken(width)),
        [_, Dim::Fixed(width)] => Ok(Features::Pooled(width)),
        ref d => Err(format!(
            "output '{}' is {d:?}: neither tokens [N, T, D], pooled features [N, D], nor the logits of a Gemm",
            out.name
        )),
    }
}

/// The convolution reading the image (directly or through a float Cast, as the DINOv2 export
/// does), if it pads nothing.
fn unpadded_first_conv(model: &OnnxModel, image: &str) -> Option<usize> {
    let producers = model.producers();
    let g = model.graph();
    let reads_image = |t: &str| {
        t == image
            || producers.get(t).is_some_and(|&p| {
                let n = &g.node[p];
                n.op_type == "Cast" && n.input.first().is_some_and(|i| i == image)
            })
    };
    let at = g
        .node
        .iter()
        .position(|n| n.op_type == "Conv" && n.input.first().is_some_and(|i| reads_image(i)))?;
    let conv = &g.node[at];
    let pads_nothing = node::attr_ints(conv, "pads").is_none_or(|p| p.iter().all(|&v| v == 0))
        && node::attr_s(conv, "auto_pad").is_none_or(|s| s == "NOTSET" || s == "VALID");
    // Only the convolution may read the image, or the others would see the gray tensor.
    let readers = g
        .node
        .iter()
        .filter(|n| {
            n.input.iter().any(|i| i == image) && n.op_type != "Cast" && n.op_type != "Shape"
        })
        .count();
    (pads_nothing && readers <= 1).then_some(at)
}

/// Fold x ↦ a_c·x + d_c (channel c) into the convolution at `at`, which then reads one channel.
fn fold_into_conv(
    model: &mut OnnxModel,
    at: usize,
    a: &[f32],
    d: &[f32],
) -> std::result::Result<(), String> {
    let conv = model.graph().node[at].clone();
    let w = model
        .constant(&conv.input[1])
        .ok_or_else(|| "the first convolution's weight is not a constant".to_string())?
        .map_err(|e| e.to_string())?;
    if w.dims.len() != 4 || w.dims[1] != 3 {
        return Err(format!(
            "the first convolution's weight {:?} is not [D, 3, k, k]",
            w.dims
        ));
    }
    let b = match conv.input.get(2).filter(|s| !s.is_empty()) {
        Some(n) => model
            .constant(n)
            .ok_or_else(|| "the first convolution's bias is not a constant".to_string())?
            .map_err(|e| e.to_string())?
            .to_f32_vec(),
        None => vec![0.0; w.dims[0]],
    };
    let (out, k) = (w.dims[0], w.dims[2] * w.dims[3]);
    let wv = w.to_f32_vec();
    let mut w1 = vec![0.0f32; out * k];
    let mut b1 = b;
    for o in 0..out {
        for c in 0..3 {
            let base = (o * 3 + c) * k;
            for j in 0..k {
                w1[o * k + j] += a[c] * wv[base + j];
                b1[o] += d[c] * wv[base + j];
            }
        }
    }
    let wname = model.fresh_name(&format!("{}.gray.weight", conv.name));
    let bname = model.fresh_name(&format!("{}.gray.bias", conv.name));
    let shape = vec![out, 1, w.dims[2], w.dims[3]];
    model.set_initializer(&wname, &Tensor::f32(shape, w1).map_err(|e| e.to_string())?);
    model.set_initializer(
        &bname,
        &Tensor::f32(vec![out], b1).map_err(|e| e.to_string())?,
    );
    let c = &mut model.graph_mut().node[at];
    c.input[1] = wname;
    match c.input.get_mut(2) {
        Some(slot) => *slot = bname,
        None => c.input.push(bname),
    }
    Ok(())
}
