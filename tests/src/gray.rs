//! The reference a gray classifier (`edgeslim::import::gray::classifier`) is checked against,
//! built from plain ops: x → Resize (bilinear) → ·std + mean → repeated over RGB →
//! (− μ) / σ → the backbone, its output `out` (e.g. a class token gathered by the caller).

use edgeslim::import::gray::GrayInput;
use edgeslim::onnx::node::{int, make, string};
use edgeslim::onnx::{OnnxModel, SaveOptions, Tensor};
use std::path::Path;

/// `backbone` (image input `image`, square side `size`) reading the gray tensor `x
/// [1, 1, side, side]`; `imagenet` is its per-channel (mean, std). The caller fixes the output.
pub fn reference(
    mut r: OnnxModel,
    image: &str,
    size: usize,
    gray: GrayInput,
    imagenet: ([f32; 3], [f32; 3]),
) -> OnnxModel {
    let f = (size / gray.side) as f32;
    let init = |m: &mut OnnxModel, n: &str, t: Tensor| m.set_initializer(n, &t);
    init(
        &mut r,
        "ref.scales",
        Tensor::f32(vec![4], vec![1.0, 1.0, f, f]).unwrap(),
    );
    init(&mut r, "ref.std", Tensor::scalar_f32(gray.std));
    init(&mut r, "ref.mean", Tensor::scalar_f32(gray.mean));
    init(
        &mut r,
        "ref.mu",
        Tensor::f32(vec![1, 3, 1, 1], imagenet.0.to_vec()).unwrap(),
    );
    init(
        &mut r,
        "ref.sigma",
        Tensor::f32(vec![1, 3, 1, 1], imagenet.1.to_vec()).unwrap(),
    );
    let nodes = vec![
        make(
            "Resize",
            &["x", "", "ref.scales"],
            &["r1"],
            "r1",
            vec![string("mode", "linear")],
        ),
        make("Mul", &["r1", "ref.std"], &["r2"], "r2", vec![]),
        make("Add", &["r2", "ref.mean"], &["r3"], "r3", vec![]),
        make(
            "Concat",
            &["r3", "r3", "r3"],
            &["r4"],
            "r4",
            vec![int("axis", 1)],
        ),
        make("Sub", &["r4", "ref.mu"], &["r5"], "r5", vec![]),
        make("Div", &["r5", "ref.sigma"], &["r6"], "r6", vec![]),
    ];
    r.replace_uses(image, "r6");
    let g = r.graph_mut();
    for (i, n) in nodes.into_iter().enumerate() {
        g.node.insert(i, n);
    }
    let side = gray.side as i64;
    g.input[0] = edgeslim::onnx::builder::value_info(
        "x",
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        Some(&[1i64, 1, side, side].map(edgeslim::onnx::builder::D::N)),
    );
    g.value_info.clear();
    r
}

/// The gray classifier `clf` and its plain-ops reference `r` (both reading `x [1, 1, 28, 28]`),
/// saved into `dir` and run on one random digit from `seed`: tract gives the same `width`
/// outputs for both (≤ 1e-4), ONNX Runtime the same as tract for the classifier, and the
/// classifier passes onnx.checker.
pub fn assert_matches_reference(
    dir: &Path,
    r: &OnnxModel,
    clf: &OnnxModel,
    width: usize,
    seed: u64,
) {
    use crate::engines::{random, rel_diff, run_both};
    let (fr, fc) = (dir.join("reference.onnx"), dir.join("classifier.onnx"));
    r.save(&fr, &SaveOptions::default()).unwrap();
    clf.save(&fc, &SaveOptions::default()).unwrap();
    let x = random(784, seed);
    let (tr, _) = run_both(&fr, &[("x", vec![1, 1, 28, 28], x.clone())]);
    let (tc, oc) = run_both(&fc, &[("x", vec![1, 1, 28, 28], x)]);
    assert_eq!(tc[0].len(), width);
    assert!(
        rel_diff(&tr[0], &tc[0]) <= 1e-4,
        "{}",
        rel_diff(&tr[0], &tc[0])
    );
    assert!(
        rel_diff(&tc[0], &oc[0]) <= 1e-4,
        "{}",
        rel_diff(&tc[0], &oc[0])
    );
    assert_eq!(
        crate::python_check(&fc, None, &["--input-shape", "x=1,1,28,28"]).checker,
        "ok"
    );
}
