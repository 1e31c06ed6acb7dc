//! The training engine computes what ONNX Runtime computes on the same graphs (a real PP-OCR
//! model on a real image, a conv net with batch norm, a small ViT, a Siamese correlation
//! graph and one graph per op), its gradients flow where they should, a small net memorises a
//! batch with SGD and AdamW, and the exported model runs in ONNX Runtime with the engine's
//! outputs.

use edgeslim::engines::ort::OrtSession;
use edgeslim::onnx::builder::{GraphBuilder, D};
use edgeslim::onnx::node::{float, int, ints, string};
use edgeslim::onnx::{OnnxModel, SaveOptions, Tensor as OnnxTensor};
use edgeslim::train::engine::candle_core::{DType, Device, Tensor};
use edgeslim::train::engine::gradcheck::{self, random, random_onnx, single_node};
use edgeslim::train::engine::{loss, reference, EngineOptions, Freeze, GraphModule, Mode};
use edgeslim::train::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer, Sgd, SgdConfig};
use edgeslim_e2e::models::{batchnorm, Weights};
use edgeslim_e2e::{assets, python_check};
use edgeslim_runtime::input::{image_to_tensor, open_image, tensor_to_f32_vec, ImagePrep};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

// ---- helpers -------------------------------------------------------------------------------

fn f32_tensor(dims: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    random(dims, seed, lo, hi).to_dtype(DType::F32).unwrap()
}

fn to_array(t: &Tensor) -> ArrayD<f32> {
    let v = t
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    ArrayD::from_shape_vec(IxDyn(t.dims()), v).unwrap()
}

fn ort_outputs(model: &OnnxModel, inputs: &[(&str, Tensor)]) -> HashMap<String, ArrayD<f32>> {
    let mut s = OrtSession::load_bytes(&model.to_bytes().unwrap(), 1).unwrap();
    let feeds: Vec<(String, ArrayD<f32>)> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), to_array(t)))
        .collect();
    s.run(&feeds).unwrap().into_iter().collect()
}

/// Max |engine − ORT| over all outputs, and the output scale (max |ORT|), asserting shapes.
fn diff_vs_ort(
    model: &OnnxModel,
    engine: &HashMap<String, Tensor>,
    inputs: &[(&str, Tensor)],
) -> Vec<(String, f64, f64)> {
    let ort = ort_outputs(model, inputs);
    let mut out = Vec::new();
    for (name, r) in &ort {
        let e = to_array(
            engine
                .get(name)
                .unwrap_or_else(|| panic!("engine did not produce '{name}'")),
        );
        assert_eq!(e.shape(), r.shape(), "shape of '{name}'");
        let diff = e
            .iter()
            .zip(r.iter())
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        let scale = r.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        out.push((name.clone(), diff, scale));
    }
    out
}

/// Engine (eval mode) and ONNX Runtime agree within 1e-4 of the output scale.
fn assert_matches_ort(model: &OnnxModel, inputs: &[(&str, Tensor)], what: &str) {
    let g = GraphModule::from_onnx(
        model,
        &EngineOptions {
            require_weights: false,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let with_grad = g
        .forward(inputs, Mode::Eval, &[])
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let inference = g.forward_inference(inputs, &[]).unwrap();
    for (name, diff, scale) in diff_vs_ort(model, &with_grad, inputs) {
        assert!(
            diff <= 1e-4 * scale.max(1e-3),
            "{what}: output '{name}' differs from ORT by {diff} (scale {scale})"
        );
    }
    for (name, t) in &with_grad {
        let same = (t - &inference[name])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert_eq!(
            same.to_scalar::<f32>().unwrap(),
            0.0,
            "{what}: forward_inference differs on '{name}'"
        );
    }
}

// ---- models built here ----------------------------------------------------------------------

/// A conv net covering the conv and pooling variants: BN, depthwise with stride (2, 1) and
/// asymmetric pads, dilation (ORT rejects dilation with SAME_* auto-pad), grouped 1x1, pools, ConvTranspose, Resize, Pad.
fn conv_bn_net(batch: i64) -> OnnxModel {
    let mut w = Weights::new(7);
    let mut b = GraphBuilder::new("conv_bn_net", 14);
    let x = b.input("x", &[batch, 3, 17, 15]);
    let w1 = b.init("conv1.w", &w.uniform(&[8, 3, 3, 3], 0.4));
    let b1 = b.init("conv1.b", &w.uniform(&[8], 0.1));
    let c1 = b.node("Conv", &[&x, &w1, &b1], vec![ints("pads", &[1, 1, 1, 1])]);
    let n1 = batchnorm(&mut b, &mut w, &c1, 8, "bn1");
    let r1 = b.node("Relu", &[&n1], vec![]);
    let wd = b.init("dw.w", &w.uniform(&[8, 1, 3, 3], 0.5));
    let c2 = b.node(
        "Conv",
        &[&r1, &wd],
        vec![
            int("group", 8),
            ints("strides", &[2, 1]),
            ints("pads", &[1, 0, 0, 1]),
        ],
    );
    let n2 = batchnorm(&mut b, &mut w, &c2, 8, "bn2");
    let h2 = b.node("HardSwish", &[&n2], vec![]);
    let w3 = b.init("dil.w", &w.uniform(&[8, 8, 3, 3], 0.2));
    let c3 = b.node(
        "Conv",
        &[&h2, &w3],
        vec![ints("dilations", &[2, 2]), ints("pads", &[2, 2, 2, 2])],
    );
    let lo = b.init("six.lo", &OnnxTensor::scalar_f32(0.0));
    let hi = b.init("six.hi", &OnnxTensor::scalar_f32(6.0));
    let r3 = b.node("Clip", &[&c3, &lo, &hi], vec![]);
    let wg = b.init("group.w", &w.uniform(&[8, 4, 1, 1], 0.5));
    let c4 = b.node("Conv", &[&r3, &wg], vec![int("group", 2)]);
    let hs = b.node("HardSigmoid", &[&c4], vec![]);
    let se = b.node("Mul", &[&c4, &hs], vec![]);
    let mp = b.node(
        "MaxPool",
        &[&se],
        vec![
            ints("kernel_shape", &[2, 2]),
            ints("strides", &[2, 2]),
            int("ceil_mode", 1),
        ],
    );
    let ap = b.node(
        "AveragePool",
        &[&mp],
        vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[1, 1]),
            ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let wt = b.init("up.w", &w.uniform(&[8, 4, 2, 2], 0.4));
    let bt = b.init("up.b", &w.uniform(&[4], 0.1));
    let ct = b.node(
        "ConvTranspose",
        &[&ap, &wt, &bt],
        vec![ints("strides", &[2, 2])],
    );
    let roi = b.init("roi", &OnnxTensor::f32(vec![0], vec![]).unwrap());
    let sc = b.init(
        "scales",
        &OnnxTensor::f32(vec![4], vec![1., 1., 0.5, 0.5]).unwrap(),
    );
    let rs = b.node("Resize", &[&ct, &roi, &sc], vec![string("mode", "nearest")]);
    let sz = b.init(
        "sizes",
        &OnnxTensor::i64(vec![4], vec![batch, 4, 9, 8]).unwrap(),
    );
    let rl = b.node(
        "Resize",
        &[&rs, &roi, &roi, &sz],
        vec![
            string("mode", "linear"),
            string("coordinate_transformation_mode", "half_pixel"),
        ],
    );
    let pads = b.init(
        "pads",
        &OnnxTensor::i64(vec![8], vec![0, 0, 1, 0, 0, 0, 0, 2]).unwrap(),
    );
    let pd = b.node("Pad", &[&rl, &pads], vec![]);
    let cat = b.node("Concat", &[&pd, &pd], vec![int("axis", 1)]);
    let gp = b.node("GlobalAveragePool", &[&cat], vec![]);
    let fl = b.node("Flatten", &[&gp], vec![]);
    let wf = b.init("fc.w", &w.uniform(&[5, 8], 0.5));
    let bf = b.init("fc.b", &w.uniform(&[5], 0.1));
    let fc = b.node("Gemm", &[&fl, &wf, &bf], vec![int("transB", 1)]);
    let sm = b.node("Softmax", &[&fc], vec![int("axis", 1)]);
    b.output(&sm);
    b.output(&fc);
    b.finish()
}

/// A Siamese tracker's correlation graph: one conv backbone shared by the template (z) and
/// search (x) branches, then a depthwise cross-correlation whose kernel is the template's
/// features (a Conv weight computed in the graph), then a 1x1 head to a response map.
fn siamese(batch: usize) -> OnnxModel {
    let mut w = Weights::new(11);
    let mut b = GraphBuilder::new("siamese", 13);
    let bi = batch as i64;
    let z = b.input("z", &[bi, 3, 12, 12]);
    let x = b.input("x", &[bi, 3, 24, 24]);
    let w1 = b.init("bb.conv1.w", &w.uniform(&[6, 3, 3, 3], 0.4));
    let w2 = b.init("bb.conv2.w", &w.uniform(&[6, 6, 3, 3], 0.3));
    let b2 = b.init("bb.conv2.b", &w.uniform(&[6], 0.1));
    let branch = |b: &mut GraphBuilder, w: &mut Weights, inp: &str, tag: &str| {
        let c = b.node("Conv", &[inp, &w1], vec![]);
        let n = batchnorm(b, w, &c, 6, tag);
        let r = b.node("Relu", &[&n], vec![]);
        b.node("Conv", &[&r, &w2, &b2], vec![])
    };
    let zf = branch(&mut b, &mut w, &z, "bn.z"); // [B, 6, 8, 8]
    let xf = branch(&mut b, &mut w, &x, "bn.x"); // [B, 6, 20, 20]
    let i64s = |v: &[i64]| OnnxTensor::i64(vec![v.len()], v.to_vec()).unwrap();
    let ks = b.init("shape.kernel", &i64s(&[bi * 6, 1, 8, 8]));
    let kernel = b.node("Reshape", &[&zf, &ks], vec![]);
    let ss = b.init("shape.search", &i64s(&[1, bi * 6, 20, 20]));
    let search = b.node("Reshape", &[&xf, &ss], vec![]);
    let corr = b.node("Conv", &[&search, &kernel], vec![int("group", bi * 6)]);
    let cs = b.init("shape.corr", &i64s(&[bi, 6, 13, 13]));
    let corr = b.node("Reshape", &[&corr, &cs], vec![]);
    let wh = b.init("head.w", &w.uniform(&[1, 6, 1, 1], 0.5));
    let bh = b.init("head.b", &w.uniform(&[1], 0.1));
    let resp = b.node("Conv", &[&corr, &wh, &bh], vec![]);
    b.node_named("Identity", "response_out", &[&resp], &["response"], vec![]);
    b.output("response");
    b.finish()
}

/// A small classifier for the training checks: conv-BN-ReLU-pool, conv-BN-ReLU, GAP, Gemm.
fn small_cnn(classes: usize) -> OnnxModel {
    let mut w = Weights::new(21);
    let mut b = GraphBuilder::new("small_cnn", 13);
    let x = b.input_dims(
        "x",
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        &[D::Sym("N"), 1.into(), 12.into(), 12.into()],
    );
    let w1 = b.init("conv1.w", &w.uniform(&[8, 1, 3, 3], 0.5));
    let c1 = b.node("Conv", &[&x, &w1], vec![ints("pads", &[1, 1, 1, 1])]);
    let n1 = batchnorm(&mut b, &mut w, &c1, 8, "bn1");
    let r1 = b.node("Relu", &[&n1], vec![]);
    let p1 = b.node(
        "MaxPool",
        &[&r1],
        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
    );
    let w2 = b.init("conv2.w", &w.uniform(&[16, 8, 3, 3], 0.2));
    let c2 = b.node("Conv", &[&p1, &w2], vec![ints("pads", &[1, 1, 1, 1])]);
    let n2 = batchnorm(&mut b, &mut w, &c2, 16, "bn2");
    let r2 = b.node("Relu", &[&n2], vec![]);
    let gp = b.node("GlobalAveragePool", &[&r2], vec![]);
    let fl = b.node("Flatten", &[&gp], vec![]);
    let wf = b.init("fc.w", &w.uniform(&[classes, 16], 0.3));
    let bf = b.init("fc.b", &w.uniform(&[classes], 0.0));
    let fc = b.node("Gemm", &[&fl, &wf, &bf], vec![int("transB", 1)]);
    b.node_named("Identity", "logits_out", &[&fc], &["logits"], vec![]);
    b.output_dims("logits", &[D::Sym("N"), (classes as i64).into()]);
    b.finish()
}

// ---- forward equality with ONNX Runtime ------------------------------------------------------

#[test]
fn ppocr_cls_matches_onnxruntime_on_a_real_image() {
    let path = assets().ppocr_cls();
    let model = OnnxModel::load(&path).unwrap();
    let img = open_image(&assets().image("text.png")).unwrap();
    let prep = ImagePrep {
        scale: 1.0 / 255.0,
        mean: [0.5; 3],
        std: [0.5; 3],
        bgr: true,
    };
    let x = image_to_tensor(&img, &[1, 3, 48, 192], &prep).unwrap();
    let x = Tensor::from_vec(
        tensor_to_f32_vec(&x).unwrap(),
        (1, 3, 48, 192),
        &Device::Cpu,
    )
    .unwrap();
    let g = GraphModule::from_onnx(&model, &EngineOptions::default()).unwrap();
    // Weights live in Constant nodes: all of them are found and trainable.
    let params = g.param_count();
    assert!(params > 100_000, "{params} trainable parameters");
    let out = g.forward(&[("x", x.clone())], Mode::Eval, &[]).unwrap();
    for (name, diff, scale) in diff_vs_ort(&model, &out, &[("x", x.clone())]) {
        assert!(scale > 0.5, "softmax output");
        assert!(
            diff <= 1e-4 * scale,
            "PP-OCR cls output '{name}' differs from ORT by {diff}"
        );
    }
    // Gradients reach the first conv's weight through the whole network.
    let y = out.values().next().unwrap();
    let l = y.sqr().unwrap().sum_all().unwrap();
    let grads = g.backward(&l).unwrap();
    let with_grad = g
        .trainable()
        .iter()
        .filter(|(_, v)| grads.get(v.as_tensor()).is_some())
        .count();
    assert!(
        with_grad * 10 >= g.trainable().len() * 9,
        "{with_grad} of {} weights got a gradient",
        g.trainable().len()
    );
    // Export of the untouched module round-trips through ORT.
    let e = g.export().unwrap();
    let again = ort_outputs(&e, &[("x", x.clone())]);
    let orig = ort_outputs(&model, &[("x", x)]);
    for (n, a) in orig {
        let b = &again[&n];
        let d = a
            .iter()
            .zip(b.iter())
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-6, "export changed '{n}' by {d}");
    }
}

#[test]
fn conv_bn_net_matches_onnxruntime() {
    let m = conv_bn_net(2);
    assert_matches_ort(
        &m,
        &[("x", f32_tensor(&[2, 3, 17, 15], 1, -1., 1.))],
        "conv_bn_net",
    );
}

#[test]
fn vit_matches_onnxruntime_for_any_batch_size() {
    let m = reference::vit(&reference::VitConfig {
        blocks: 2,
        dim: 32,
        heads: 2,
        mlp: 64,
        classes: 10,
        seed: 5,
    });
    for n in [3, 1] {
        assert_matches_ort(
            &m,
            &[("x", f32_tensor(&[n, 1, 28, 28], 2 + n as u64, 0., 1.))],
            "vit",
        );
    }
}

#[test]
fn siamese_xcorr_matches_onnxruntime_and_trains_both_branches() {
    let m = siamese(2);
    let z = f32_tensor(&[2, 3, 12, 12], 3, -1., 1.);
    let x = f32_tensor(&[2, 3, 24, 24], 4, -1., 1.);
    assert_matches_ort(&m, &[("z", z.clone()), ("x", x.clone())], "siamese");
    // Gradients flow into the shared backbone from both branches, and into both inputs.
    let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
    let zv = edgeslim::train::engine::candle_core::Var::from_tensor(&z).unwrap();
    let xv = edgeslim::train::engine::candle_core::Var::from_tensor(&x).unwrap();
    let out = g
        .forward(
            &[("z", zv.as_tensor().clone()), ("x", xv.as_tensor().clone())],
            Mode::Train,
            &[],
        )
        .unwrap();
    let l = (out["response"].clone() * f32_tensor(&[2, 1, 13, 13], 5, -1., 1.))
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = g.backward(&l).unwrap();
    for v in [&zv, &xv] {
        let n = grads
            .get(v.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0);
    }
    for (name, v) in g.trainable() {
        assert!(grads.get(v.as_tensor()).is_some(), "no gradient for {name}");
    }
    // And the gradients are right (f64 against finite differences, batch 1 to keep it quick).
    let small = siamese(1);
    let opts = gradcheck::GradCheckOptions {
        mode: Mode::Train,
        max_elems: 8,
        ..Default::default()
    };
    let r = gradcheck::check_model(
        &small,
        &[
            ("z", random(&[1, 3, 12, 12], 6, -1., 1.)),
            ("x", random(&[1, 3, 24, 24], 7, -1., 1.)),
        ],
        &opts,
    )
    .unwrap();
    assert!(r.checked > 50, "{r:?}");
}

#[test]
fn every_op_matches_onnxruntime() {
    let e = |v: &[f32]| OnnxTensor::f32(vec![v.len()], v.to_vec()).unwrap();
    let i64s = |v: &[i64]| OnnxTensor::i64(vec![v.len()], v.to_vec()).unwrap();
    let empty = OnnxTensor::f32(vec![0], vec![]).unwrap();
    type Case = (
        &'static str,
        Vec<usize>,
        Vec<(&'static str, OnnxTensor)>,
        Vec<onnx_protobuf::AttributeProto>,
        i64,
    );
    let x4 = vec![2, 4, 9, 8];
    let cases: Vec<Case> = vec![
        (
            "Conv",
            x4.clone(),
            vec![("w", random_onnx(&[6, 2, 3, 3], 1, -1., 1.))],
            vec![
                int("group", 2),
                ints("strides", &[2, 1]),
                ints("pads", &[0, 1, 2, 1]),
                ints("dilations", &[1, 2]),
            ],
            13,
        ),
        (
            "Conv",
            x4.clone(),
            vec![("w", random_onnx(&[4, 1, 5, 5], 2, -1., 1.))],
            vec![int("group", 4), string("auto_pad", "SAME_LOWER")],
            13,
        ),
        (
            "Conv",
            vec![2, 4, 11],
            vec![
                ("w", random_onnx(&[3, 4, 3], 3, -1., 1.)),
                ("b", random_onnx(&[3], 4, -1., 1.)),
            ],
            vec![ints("strides", &[2])],
            13,
        ),
        (
            "ConvTranspose",
            x4.clone(),
            vec![
                ("w", random_onnx(&[4, 3, 3, 3], 5, -1., 1.)),
                ("b", random_onnx(&[3], 6, -1., 1.)),
            ],
            vec![
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 0, 0]),
                ints("output_padding", &[1, 1]),
            ],
            13,
        ),
        (
            "ConvTranspose",
            x4.clone(),
            vec![("w", random_onnx(&[4, 2, 2, 2], 7, -1., 1.))],
            vec![int("group", 2), ints("strides", &[2, 2])],
            13,
        ),
        (
            "ConvTranspose",
            x4.clone(),
            vec![("w", random_onnx(&[4, 2, 3, 3], 8, -1., 1.))],
            vec![ints("strides", &[2, 2]), ints("output_shape", &[18, 16])],
            13,
        ),
        (
            "Gemm",
            vec![3, 5],
            vec![
                ("b", random_onnx(&[4, 5], 9, -1., 1.)),
                ("c", random_onnx(&[1, 4], 10, -1., 1.)),
            ],
            vec![int("transB", 1), float("alpha", 0.5), float("beta", 2.0)],
            13,
        ),
        (
            "MatMul",
            vec![2, 3, 5, 4],
            vec![("b", random_onnx(&[4, 6], 11, -1., 1.))],
            vec![],
            13,
        ),
        (
            "BatchNormalization",
            x4.clone(),
            vec![
                ("g", random_onnx(&[4], 12, 0.5, 1.5)),
                ("b", random_onnx(&[4], 13, -1., 1.)),
                ("m", random_onnx(&[4], 14, -1., 1.)),
                ("v", random_onnx(&[4], 15, 0.5, 2.)),
            ],
            vec![float("epsilon", 1e-3)],
            15,
        ),
        (
            "LayerNormalization",
            vec![2, 5, 6],
            vec![
                ("g", random_onnx(&[6], 16, 0.5, 1.5)),
                ("b", random_onnx(&[6], 17, -1., 1.)),
            ],
            vec![],
            17,
        ),
        (
            "InstanceNormalization",
            x4.clone(),
            vec![
                ("g", random_onnx(&[4], 18, 0.5, 1.5)),
                ("b", random_onnx(&[4], 19, -1., 1.)),
            ],
            vec![],
            13,
        ),
        ("Relu", x4.clone(), vec![], vec![], 13),
        (
            "LeakyRelu",
            x4.clone(),
            vec![],
            vec![float("alpha", 0.2)],
            13,
        ),
        (
            "PRelu",
            x4.clone(),
            vec![("s", random_onnx(&[4, 1, 1], 20, 0., 0.5))],
            vec![],
            13,
        ),
        ("Elu", x4.clone(), vec![], vec![], 13),
        (
            "Clip",
            x4.clone(),
            vec![
                ("lo", OnnxTensor::scalar_f32(-0.3)),
                ("hi", OnnxTensor::scalar_f32(0.4)),
            ],
            vec![],
            13,
        ),
        ("HardSigmoid", x4.clone(), vec![], vec![], 13),
        ("HardSwish", x4.clone(), vec![], vec![], 14),
        ("Sigmoid", x4.clone(), vec![], vec![], 13),
        ("Tanh", x4.clone(), vec![], vec![], 13),
        ("Softplus", x4.clone(), vec![], vec![], 13),
        ("Erf", x4.clone(), vec![], vec![], 13),
        ("Gelu", x4.clone(), vec![], vec![], 20),
        (
            "Gelu",
            x4.clone(),
            vec![],
            vec![string("approximate", "tanh")],
            20,
        ),
        ("Softmax", x4.clone(), vec![], vec![int("axis", 1)], 13),
        ("Softmax", x4.clone(), vec![], vec![int("axis", 2)], 11),
        ("LogSoftmax", x4.clone(), vec![], vec![], 13),
        ("Dropout", x4.clone(), vec![], vec![], 13),
        (
            "Add",
            x4.clone(),
            vec![("b", random_onnx(&[9, 1], 21, -1., 1.))],
            vec![],
            13,
        ),
        (
            "Sub",
            x4.clone(),
            vec![("b", random_onnx(&[8], 22, -1., 1.))],
            vec![],
            13,
        ),
        (
            "Mul",
            x4.clone(),
            vec![("b", random_onnx(&[4, 1, 1], 23, -1., 1.))],
            vec![],
            13,
        ),
        (
            "Div",
            x4.clone(),
            vec![("b", random_onnx(&[4, 1, 8], 24, 0.5, 1.5))],
            vec![],
            13,
        ),
        (
            "Pow",
            x4.clone(),
            vec![("e", OnnxTensor::scalar_f32(2.0))],
            vec![],
            13,
        ),
        (
            "Max",
            x4.clone(),
            vec![("b", random_onnx(&[8], 25, -1., 1.))],
            vec![],
            13,
        ),
        ("Sqrt", x4.clone(), vec![], vec![], 13),
        ("Exp", x4.clone(), vec![], vec![], 13),
        ("Abs", x4.clone(), vec![], vec![], 13),
        (
            "MaxPool",
            x4.clone(),
            vec![],
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 1, 1]),
            ],
            13,
        ),
        (
            "MaxPool",
            x4.clone(),
            vec![],
            vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[2, 2]),
                int("ceil_mode", 1),
            ],
            13,
        ),
        (
            "MaxPool",
            x4.clone(),
            vec![],
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("pads", &[2, 1, 2, 2]),
                ints("dilations", &[2, 2]),
            ],
            13,
        ),
        (
            "AveragePool",
            x4.clone(),
            vec![],
            vec![
                ints("kernel_shape", &[3, 2]),
                ints("strides", &[2, 1]),
                ints("pads", &[1, 0, 1, 1]),
            ],
            13,
        ),
        (
            "AveragePool",
            x4.clone(),
            vec![],
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 1, 1]),
                int("count_include_pad", 1),
            ],
            13,
        ),
        (
            "AveragePool",
            x4.clone(),
            vec![],
            vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[2, 2]),
                int("ceil_mode", 1),
            ],
            13,
        ),
        ("GlobalAveragePool", x4.clone(), vec![], vec![], 13),
        ("GlobalMaxPool", x4.clone(), vec![], vec![], 13),
        (
            "ReduceMean",
            x4.clone(),
            vec![],
            vec![ints("axes", &[1, 3]), int("keepdims", 0)],
            13,
        ),
        (
            "ReduceMean",
            x4.clone(),
            vec![("a", i64s(&[-1]))],
            vec![],
            18,
        ),
        (
            "ReduceSum",
            x4.clone(),
            vec![("a", i64s(&[2]))],
            vec![int("keepdims", 0)],
            13,
        ),
        (
            "ReduceMax",
            x4.clone(),
            vec![],
            vec![ints("axes", &[2, 3])],
            13,
        ),
        (
            "Reshape",
            x4.clone(),
            vec![("s", i64s(&[0, -1, 4]))],
            vec![],
            13,
        ),
        ("Flatten", x4.clone(), vec![], vec![int("axis", 2)], 13),
        (
            "Transpose",
            x4.clone(),
            vec![],
            vec![ints("perm", &[0, 2, 3, 1])],
            13,
        ),
        (
            "Slice",
            x4.clone(),
            vec![
                ("s", i64s(&[1, -2, 7])),
                ("e", i64s(&[9, 0, 0])),
                ("a", i64s(&[2, 3, 1])),
                ("st", i64s(&[3, -1, -2])),
            ],
            vec![],
            13,
        ),
        (
            "Squeeze",
            vec![2, 1, 9, 1],
            vec![("a", i64s(&[1, 3]))],
            vec![],
            13,
        ),
        (
            "Unsqueeze",
            x4.clone(),
            vec![("a", i64s(&[0, 5]))],
            vec![],
            13,
        ),
        (
            "Gather",
            x4.clone(),
            vec![("i", OnnxTensor::i64(vec![2], vec![-1, 0]).unwrap())],
            vec![int("axis", 2)],
            13,
        ),
        (
            "Gather",
            x4.clone(),
            vec![("i", OnnxTensor::i64(vec![], vec![3]).unwrap())],
            vec![int("axis", 1)],
            13,
        ),
        (
            "Expand",
            vec![4, 1, 8],
            vec![("s", i64s(&[2, 4, 3, 8]))],
            vec![],
            13,
        ),
        (
            "Tile",
            x4.clone(),
            vec![("r", i64s(&[1, 2, 1, 3]))],
            vec![],
            13,
        ),
        (
            "Pad",
            x4.clone(),
            vec![
                ("p", i64s(&[0, 1, 2, -1, 0, 0, 1, 3])),
                ("v", OnnxTensor::scalar_f32(0.25)),
            ],
            vec![],
            13,
        ),
        (
            "Pad",
            x4.clone(),
            vec![("p", i64s(&[0, 0, 2, 1, 0, 0, 1, 3]))],
            vec![string("mode", "reflect")],
            13,
        ),
        (
            "Pad",
            x4.clone(),
            vec![("p", i64s(&[0, 0, 2, 1, 0, 0, 1, 3]))],
            vec![string("mode", "edge")],
            13,
        ),
        (
            "Resize",
            x4.clone(),
            vec![("roi", empty.clone()), ("sc", e(&[1., 1., 2., 2.]))],
            vec![string("mode", "nearest")],
            13,
        ),
        (
            "Resize",
            x4.clone(),
            vec![("roi", empty.clone()), ("sc", e(&[1., 1., 1.5, 0.5]))],
            vec![
                string("mode", "nearest"),
                string("coordinate_transformation_mode", "asymmetric"),
                string("nearest_mode", "floor"),
            ],
            13,
        ),
        (
            "Resize",
            x4.clone(),
            vec![("roi", empty.clone()), ("sc", e(&[1., 1., 2., 1.5]))],
            vec![string("mode", "linear")],
            13,
        ),
        (
            "Resize",
            x4.clone(),
            vec![
                ("roi", empty.clone()),
                ("sc", empty.clone()),
                ("sz", i64s(&[2, 4, 5, 13])),
            ],
            vec![
                string("mode", "linear"),
                string("coordinate_transformation_mode", "align_corners"),
            ],
            13,
        ),
        (
            "Resize",
            x4.clone(),
            vec![("roi", empty.clone()), ("sc", e(&[1., 1., 0.6, 0.75]))],
            vec![
                string("mode", "linear"),
                string("coordinate_transformation_mode", "pytorch_half_pixel"),
            ],
            13,
        ),
        (
            "Resize",
            x4.clone(),
            vec![
                ("roi", empty.clone()),
                ("sc", empty.clone()),
                ("sz", i64s(&[2, 4, 4, 17])),
            ],
            vec![
                string("mode", "nearest"),
                string("coordinate_transformation_mode", "tf_half_pixel_for_nn"),
                string("nearest_mode", "round_prefer_ceil"),
            ],
            13,
        ),
        ("Identity", x4.clone(), vec![], vec![], 13),
    ];
    let mut failures = Vec::new();
    for (k, (op, dims, inits, attrs, opset)) in cases.into_iter().enumerate() {
        let m = single_node(op, &[("x", &dims)], &inits, attrs, 1, opset);
        let x = f32_tensor(&dims, 100 + k as u64, -1., 1.);
        let x = if op == "Sqrt" { x.abs().unwrap() } else { x };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_matches_ort(&m, &[("x", x)], &format!("case {k} ({op})"))
        }));
        if let Err(e) = r {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(format!("case {k} {op}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} ops disagree with ORT:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- training ------------------------------------------------------------------------------

/// A fixed batch: 32 random 12x12 images with random labels among 4 classes.
fn batch() -> (Tensor, Tensor) {
    let x = f32_tensor(&[32, 1, 12, 12], 31, 0., 1.);
    let labels: Vec<u32> = (0..32u32).map(|i| (i * 7 + 3) % 4).collect();
    (x, Tensor::from_vec(labels, 32, &Device::Cpu).unwrap())
}

fn train(g: &GraphModule, opt: &mut dyn Optimizer, steps: usize) -> (f32, f32) {
    let (x, y) = batch();
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..steps {
        let out = g.forward(&[("x", x.clone())], Mode::Train, &[]).unwrap();
        let l = loss::cross_entropy(&out["logits"], &y).unwrap();
        let v = l.to_scalar::<f32>().unwrap();
        assert!(v.is_finite());
        first.get_or_insert(v);
        last = v;
        let grads = g.backward(&l).unwrap();
        opt.step(&grads).unwrap();
    }
    (first.unwrap_or(0.0), last)
}

#[test]
fn small_cnn_memorises_a_batch_with_sgd_and_adamw_and_exports() {
    let m = small_cnn(4);
    let sgd_module = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
    let mut sgd = Sgd::new(
        sgd_module.trainable(),
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
        },
        &DecayPolicy::default(),
    )
    .unwrap();
    let (a, b) = train(&sgd_module, &mut sgd, 50);
    assert!(b < 0.5 * a, "SGD: loss {a} -> {b}");

    let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
    let mut adamw = AdamW::new(
        g.trainable(),
        AdamWConfig {
            lr: 0.01,
            ..Default::default()
        },
        &DecayPolicy::default(),
    )
    .unwrap();
    let (a, b) = train(&g, &mut adamw, 50);
    assert!(b < 0.5 * a, "AdamW: loss {a} -> {b}");

    // Export: the new weights and running statistics, same graph, same outputs in ORT as
    // the engine in eval mode.
    let e = g.export().unwrap();
    assert_eq!(e.graph().node.len(), m.graph().node.len());
    assert_ne!(e.initializer("conv1.w"), m.initializer("conv1.w"));
    assert_ne!(e.initializer("bn1.mean"), m.initializer("bn1.mean"));
    let (x, _) = batch();
    let engine = g.forward_inference(&[("x", x.clone())], &[]).unwrap();
    for (name, diff, scale) in diff_vs_ort(&e, &engine, &[("x", x)]) {
        assert!(
            diff <= 1e-4 * scale.max(1e-3),
            "exported '{name}' differs from the engine by {diff}"
        );
    }
    // onnx.checker accepts it.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trained.onnx");
    e.save(&p, &SaveOptions::default()).unwrap();
    let c = python_check(&p, None, &["--input-shape", "x=2,1,12,12"]);
    assert_eq!(c.checker, "ok");
}

#[test]
fn frozen_weights_get_no_gradient_and_do_not_move() {
    let m = small_cnn(4);
    let opts = EngineOptions {
        freeze: Some(Freeze::pattern("^conv1\\.|^bn1\\.").unwrap()),
        ..Default::default()
    };
    let g = GraphModule::from_onnx(&m, &opts).unwrap();
    let names: Vec<String> = g.trainable().into_iter().map(|(n, _)| n).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("conv1") || n.starts_with("bn1")),
        "{names:?}"
    );
    assert!(names.contains(&"fc.w".to_string()));
    let all = g.weights();
    assert!(all.iter().any(|w| w.name == "conv1.w" && !w.trainable));
    let mut opt = Sgd::new(g.trainable(), SgdConfig::default(), &DecayPolicy::default()).unwrap();
    let before = g.export().unwrap();
    train(&g, &mut opt, 3);
    let after = g.export().unwrap();
    assert_eq!(before.initializer("conv1.w"), after.initializer("conv1.w"));
    assert_ne!(before.initializer("fc.w"), after.initializer("fc.w"));
}

// ---- bad input -----------------------------------------------------------------------------

#[test]
fn an_unsupported_op_names_the_op_and_the_node() {
    let mut b = GraphBuilder::new("bad", 13);
    let x = b.input("x", &[1, 4]);
    let w = b.init("w", &random_onnx(&[4, 4], 1, -1., 1.));
    let y = b.node("MatMul", &[&x, &w], vec![]);
    b.node_named("NonMaxSuppression", "nms_head", &[&y], &["boxes"], vec![]);
    b.output("boxes");
    let e = GraphModule::from_onnx(&b.finish(), &EngineOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nms_head") && e.contains("NonMaxSuppression") && e.contains("not supported"),
        "{e}"
    );
}

#[test]
fn a_model_without_float_weights_is_refused() {
    let m = single_node("Relu", &[("x", &[2, 3])], &[], vec![], 1, 13);
    let e = GraphModule::from_onnx(&m, &EngineOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no float weight"), "{e}");
    // Everything frozen: compiling works (a teacher), asking for trainable weights does not.
    let g = GraphModule::from_onnx(
        &small_cnn(3),
        &EngineOptions {
            freeze: Some(Freeze::pattern(".").unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(g.param_count(), 0);
    let e = g.require_trainable().unwrap_err().to_string();
    assert!(e.contains("no trainable float weight"), "{e}");
}

#[test]
fn unknown_inputs_and_wanted_tensors_are_errors_and_intermediates_are_returned() {
    let m = small_cnn(3);
    let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
    let x = f32_tensor(&[2, 1, 12, 12], 1, 0., 1.);
    let e = g
        .forward(&[("image", x.clone())], Mode::Eval, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'image' is not an input"), "{e}");
    let e = g
        .forward(&[("x", x.clone())], Mode::Eval, &["nope"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'nope'"), "{e}");
    let feat = m
        .graph()
        .node
        .iter()
        .find(|n| n.op_type == "GlobalAveragePool")
        .unwrap()
        .output[0]
        .clone();
    let out = g.forward(&[("x", x)], Mode::Eval, &[&feat]).unwrap();
    assert_eq!(out[&feat].dims(), &[2, 16, 1, 1]);
    assert!(out.contains_key("logits"));
}

/// PP-OCRv4 det (HardSigmoid attention, Resize, ConvTranspose, a probability map) in the
/// engine, eval mode, equals ONNX Runtime: what label-free distillation of a pruned detector
/// trains on.
#[test]
fn ppocr_det_matches_onnxruntime_on_a_real_image() {
    let path = assets().ppocr_det();
    let model = OnnxModel::load(&path).unwrap();
    let img = open_image(&assets().image("coffee.png")).unwrap();
    let x = image_to_tensor(&img, &[1, 3, 160, 160], &ImagePrep::default()).unwrap();
    let x = Tensor::from_vec(
        tensor_to_f32_vec(&x).unwrap(),
        (1, 3, 160, 160),
        &Device::Cpu,
    )
    .unwrap();
    let g = GraphModule::from_onnx(&model, &EngineOptions::default()).unwrap();
    for mode in [Mode::Eval] {
        let out = g.forward(&[("x", x.clone())], mode, &[]).unwrap();
        for (name, diff, scale) in diff_vs_ort(&model, &out, &[("x", x.clone())]) {
            assert!(
                diff <= 1e-3 * scale.max(1e-3),
                "PP-OCR det output '{name}' differs from ORT by {diff} (scale {scale})"
            );
        }
    }
    let inf = g.forward_inference(&[("x", x.clone())], &[]).unwrap();
    for (name, diff, scale) in diff_vs_ort(&model, &inf, &[("x", x)]) {
        assert!(
            diff <= 1e-3 * scale.max(1e-3),
            "PP-OCR det output '{name}' (inference path) differs from ORT by {diff}"
        );
    }
}

/// An inference run followed by a training run at the same input shape (evaluation before
/// fine-tuning): the shape values the first run memoised must all be there for the second.
/// PP-OCR cls computes its final Reshape's shape at run time (Shape, Slice, Cast, Concat);
/// once optimised (constants as initializers), the inference run used to free part of it
/// before memoising, and training then failed with "Reshape@18: input 1 is missing".
#[test]
fn an_inference_run_leaves_every_memoised_shape_for_the_next_run() {
    let mut model = OnnxModel::load(&assets().ppocr_cls()).unwrap();
    edgeslim::optimize::optimize(&mut model, &edgeslim::optimize::OptimizeOptions::default())
        .unwrap();
    let g = GraphModule::from_onnx(&model, &EngineOptions::default()).unwrap();
    for n in [1usize, 4] {
        let x = Tensor::from_vec(
            vec![0.1f32; n * 3 * 48 * 192],
            (n, 3, 48, 192),
            &Device::Cpu,
        )
        .unwrap();
        let a = g.forward_inference(&[("x", x.clone())], &[]).unwrap();
        let b = g.forward(&[("x", x.clone())], Mode::Eval, &[]).unwrap();
        let again = g.forward_inference(&[("x", x.clone())], &[]).unwrap();
        let t = g.forward(&[("x", x)], Mode::Train, &[]).unwrap();
        let name = a.keys().next().unwrap().clone();
        let d = (&a[&name] - &b[&name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(
            d.to_scalar::<f32>().unwrap() < 1e-6,
            "batch {n}: inference and eval differ"
        );
        assert_eq!(again[&name].dims(), t[&name].dims());
    }
}
