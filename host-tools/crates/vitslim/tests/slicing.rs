//! ViT-Slim's graph surgery on real graphs, checked by running them in tract: the zoo ViT
//! (separate q/k/v, MatMul + Add, Erf GELU) and the engine's reference ViT (timm's fused
//! q/k/v reshaped to [B, N, 3, H, dh], `Gelu` and Erf MLPs, Gemm head).

use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_runtime::input::{tensor_to_f32_vec, SplitMix64};
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::{InputShape, LoadOptions, LoadedModel};
use edgeslim_vitslim::masks::{self, MaskKind, MaskValues};
use edgeslim_vitslim::recognize::Qkv;
use edgeslim_vitslim::{budget, prepare_vit, slice, Prepared};
use std::path::Path;

fn zoo_vit() -> OnnxModel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../models/vit-tiny-mnist.onnx");
    OnnxModel::load(&p).unwrap()
}

fn fused_vit() -> OnnxModel {
    edgeslim_train::engine::reference::vit(&edgeslim_train::engine::reference::VitConfig {
        blocks: 3,
        dim: 48,
        heads: 4,
        mlp: 96,
        classes: 10,
        seed: 7,
    })
}

fn shapes(batch: usize) -> Vec<InputShape> {
    vec![format!("x={batch},1,28,28").parse().unwrap()]
}

/// The first output of `m` on `x` ([2, 1, 28, 28]) in tract.
fn run(m: &OnnxModel, x: &[f32]) -> Vec<f32> {
    let opts = LoadOptions {
        input_shapes: shapes(2),
        ..LoadOptions::default()
    };
    let loaded =
        LoadedModel::from_bytes(m.to_bytes().unwrap(), Path::new("m"), None, &opts).unwrap();
    let t = TractTensor::from_shape(&[2, 1, 28, 28], x).unwrap();
    tensor_to_f32_vec(&loaded.run(vec![t]).unwrap()[0]).unwrap()
}

fn input() -> Vec<f32> {
    let mut r = SplitMix64(3);
    (0..2 * 784).map(|_| r.next_f32() * 2.0 - 1.0).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Random mask values in [0, 2) with a fixed seed: a trained mask's spread, some near zero.
fn random_values(masks: &[masks::Mask], seed: u64) -> MaskValues {
    let mut r = SplitMix64(seed);
    masks
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                (0..m.len).map(|_| r.next_f32() * 2.0).collect(),
            )
        })
        .collect()
}

fn set_values(model: &mut OnnxModel, masks: &[masks::Mask], values: &MaskValues) {
    for m in masks {
        let v = &values[&m.name];
        let dims = model.constant(&m.name).unwrap().unwrap().dims;
        model.set_initializer(&m.name, &Tensor::f32(dims, v.clone()).unwrap());
    }
}

fn prepared(m: &OnnxModel) -> Prepared {
    prepare_vit(m, &shapes(1)).unwrap()
}

#[test]
fn recognises_the_zoo_vit_and_the_fused_reference_vit() {
    let p = prepared(&zoo_vit());
    let s = &p.structure;
    assert_eq!(s.attentions.len(), 4);
    assert_eq!(s.mlps.len(), 4);
    for a in &s.attentions {
        assert_eq!((a.heads, a.head_dim), (2, 32));
        assert!(matches!(a.qkv, Qkv::Separate { .. }));
        assert_eq!(a.proj.inputs, 64);
    }
    assert!(s.mlps.iter().all(|m| m.units == 128));
    assert!(s.mlps[0].fc1.weight.contains("blocks.0.mlp.fc1"));

    let p = prepared(&fused_vit());
    let s = &p.structure;
    assert_eq!(s.attentions.len(), 3);
    assert_eq!(s.mlps.len(), 3, "Gelu-op and Erf MLPs: {}", s.describe());
    for a in &s.attentions {
        assert_eq!((a.heads, a.head_dim), (4, 12));
        assert!(matches!(a.qkv, Qkv::FusedHeads { .. }));
    }
}

#[test]
fn a_cnn_is_refused_with_a_message() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../models/mnist-cnn.onnx");
    let m = OnnxModel::load(&p).unwrap();
    let e = prepare_vit(&m, &shapes(1)).err().unwrap().to_string();
    assert!(e.contains("no transformer block found"), "{e}");
}

#[test]
fn an_attention_it_cannot_follow_is_refused_naming_the_softmax() {
    // Add a bias to the scores of the first block: not q·kᵀ times a scalar.
    let mut m = zoo_vit();
    let i = m
        .graph()
        .node
        .iter()
        .position(|n| n.op_type == "Softmax")
        .unwrap();
    let input = m.graph().node[i].input[0].clone();
    m.set_initializer("bias", &Tensor::f32(vec![17], vec![0.0; 17]).unwrap());
    let add =
        edgeslim_onnx::node::make("Add", &[&input, "bias"], &["biased"], "score_bias", vec![]);
    m.graph_mut().node[i].input[0] = "biased".into();
    m.graph_mut().node.insert(i, add);
    let e = prepare_vit(&m, &shapes(1)).err().unwrap().to_string();
    assert!(e.contains("(Softmax) is not an attention"), "{e}");
    assert!(e.contains("Add"), "{e}");
}

#[test]
fn masks_at_one_reproduce_the_original() {
    let x = input();
    for model in [zoo_vit(), fused_vit()] {
        let p = prepared(&model);
        let want = run(&model, &x);
        // Budget 1.0: everything kept, the folded and sliced model is the original.
        let (masked, ms) =
            masks::insert(&p.model, &p.structure, &[MaskKind::HeadDims, MaskKind::Mlp]).unwrap();
        let ones = masks::values(&masked, &ms).unwrap();
        let folded = masks::fold(&masked, &p.structure, &ms, &ones).unwrap();
        let (f, keep, _) = budget::fit(&p.structure, &ms, &ones, 1.0, 1, |k| {
            Ok(
                slice::slice(&folded, &p.structure, k, &p.shapes)?.float_constant_elements()?
                    as f64
                    / p.model.float_constant_elements()? as f64,
            )
        })
        .unwrap();
        assert_eq!((f, &keep), (1.0, &slice::Keep::all(&p.structure)));
        let sliced = slice::slice(&folded, &p.structure, &keep, &p.shapes).unwrap();
        assert!(max_diff(&want, &run(&sliced, &x)) <= 1e-6);
        for kinds in [
            vec![MaskKind::HeadDims, MaskKind::Mlp],
            vec![MaskKind::Heads, MaskKind::Mlp],
        ] {
            let (masked, ms) = masks::insert(&p.model, &p.structure, &kinds).unwrap();
            assert_eq!(ms.len(), 2 * p.structure.attentions.len());
            let d = max_diff(&want, &run(&masked, &x));
            assert!(d <= 1e-6, "{kinds:?}: {d}");
        }
    }
}

/// Fold random masks, slice half of them away, compare with the unsliced model whose dropped
/// channels are zeroed: equal within float rounding. And the masked model with those values
/// equals the folded one.
#[test]
fn slicing_is_exact_and_folding_is_exact() {
    let x = input();
    for (model, label) in [(zoo_vit(), "zoo"), (fused_vit(), "fused")] {
        let p = prepared(&model);
        let s = &p.structure;
        for kinds in [
            vec![MaskKind::HeadDims, MaskKind::Mlp],
            vec![MaskKind::Heads, MaskKind::Mlp],
        ] {
            let (mut masked, ms) = masks::insert(&p.model, s, &kinds).unwrap();
            let values = random_values(&ms, 11);
            set_values(&mut masked, &ms, &values);
            let folded = masks::fold(&masked, s, &ms, &values).unwrap();
            assert!(folded.graph().node.len() == p.model.graph().node.len());
            let d = max_diff(&run(&masked, &x), &run(&folded, &x));
            assert!(d <= 1e-5, "{label} {kinds:?}: folding differs by {d}");

            let keep = budget::keep_at(s, &ms, &values, 0.5, 1);
            let sliced = slice::slice(&folded, s, &keep, &p.shapes).unwrap();
            let zeroed = slice::zero_dropped(&folded, s, &keep).unwrap();
            let d = max_diff(&run(&zeroed, &x), &run(&sliced, &x));
            assert!(d <= 1e-5, "{label} {kinds:?}: slicing differs by {d}");
            let before = p.model.float_constant_elements().unwrap();
            let after = sliced.float_constant_elements().unwrap();
            assert!(
                after < before * 3 / 4,
                "{label} {kinds:?}: {after} of {before}"
            );
            // Smaller tensors, not masked ones: the first block's q/k/v lost columns.
            let a = &s.attentions[0];
            let w = sliced
                .constant(&a.qkv.linears()[0].weight)
                .unwrap()
                .unwrap();
            assert!(w.dims[1] < a.qkv.linears()[0].outputs, "{:?}", w.dims);
        }
    }
}

#[test]
fn the_budget_is_met_by_the_sliced_model() {
    let p = prepared(&zoo_vit());
    let s = &p.structure;
    let (masked, ms) = masks::insert(&p.model, s, &[MaskKind::HeadDims, MaskKind::Mlp]).unwrap();
    let values = random_values(&ms, 5);
    let folded = masks::fold(&masked, s, &ms, &values).unwrap();
    let before = p.model.float_constant_elements().unwrap() as f64;
    for target in [0.8, 0.6] {
        let (fraction, keep, got) = budget::fit(s, &ms, &values, target, 1, |k| {
            Ok(slice::slice(&folded, s, k, &p.shapes)?.float_constant_elements()? as f64 / before)
        })
        .unwrap();
        let sliced = slice::slice(&folded, s, &keep, &p.shapes).unwrap();
        let real = sliced.float_constant_elements().unwrap() as f64 / before;
        assert!((real - got).abs() < 1e-12);
        assert!(real <= target, "{real} > {target}");
        assert!(real > target - 0.05, "{real} far below {target}");
        assert!(fraction > 0.0 && fraction < 1.0);
    }
    // Rounded to multiples of 8: still within budget, every kept size a multiple.
    let (_, keep, got) = budget::fit(s, &ms, &values, 0.6, 8, |k| {
        Ok(slice::slice(&folded, s, k, &p.shapes)?.float_constant_elements()? as f64 / before)
    })
    .unwrap();
    assert!(got <= 0.6);
    for a in &keep.attentions {
        assert_eq!(a.head_dim() % 8, 0, "{a:?}");
    }
    for m in &keep.mlps {
        assert_eq!(m.len() % 8, 0, "{}", m.len());
    }
    // Beyond what slicing can remove: a clear refusal.
    let e = budget::fit(s, &ms, &values, 0.05, 1, |k| {
        Ok(slice::slice(&folded, s, k, &p.shapes)?.float_constant_elements()? as f64 / before)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("cannot be met"), "{e}");
}

/// Token masks: saturated (tanh = 1) they change nothing; thresholded they keep the class
/// token and a shrinking, nested set of patch tokens per block, cut by a Gather on the token
/// axis; the sliced model still classifies (shape [2, 10]) with fewer MACs.
#[test]
fn token_masks_drop_tokens_monotonically() {
    let x = input();
    let model = zoo_vit();
    let p = prepared(&model);
    let s = &p.structure;
    assert!(s
        .attentions
        .iter()
        .all(|a| a.block_input.is_some() && a.tokens == 17));
    edgeslim_vitslim::tokens_allowed(&p).unwrap();
    let kinds = [MaskKind::HeadDims, MaskKind::Mlp, MaskKind::Tokens];
    let (mut masked, ms) = masks::insert(&p.model, s, &kinds).unwrap();
    let saturated: MaskValues = ms
        .iter()
        .map(|m| {
            let v = if m.kind == MaskKind::Tokens {
                20.0
            } else {
                1.0
            };
            (m.name.clone(), vec![v; m.len])
        })
        .collect();
    set_values(&mut masked, &ms, &saturated);
    assert!(max_diff(&run(&model, &x), &run(&masked, &x)) <= 1e-5);

    let values = random_values(&ms, 21);
    set_values(&mut masked, &ms, &values);
    let folded = masks::fold(&masked, s, &ms, &values).unwrap();
    assert!(folded.graph().node.iter().all(|n| n.op_type != "Tanh"));
    let keep = budget::keep_at(s, &ms, &values, 0.5, 1);
    let mut previous: Option<Vec<usize>> = None;
    for t in &keep.tokens {
        let t = t.as_ref().unwrap();
        assert_eq!(t[0], 0, "the class token stays first");
        if let Some(prev) = &previous {
            assert!(
                t.iter().all(|i| prev.contains(i)),
                "{t:?} not within {prev:?}"
            );
        }
        previous = Some(t.clone());
    }
    assert!(previous.unwrap().len() < 17);
    let sliced = slice::slice(&folded, s, &keep, &p.shapes).unwrap();
    let gathers = sliced
        .graph()
        .node
        .iter()
        .filter(|n| n.op_type == "Gather" && n.output[0].contains(".tokens"))
        .count();
    assert!(gathers >= 1);
    let out = run(&sliced, &x);
    assert_eq!(out.len(), 20);
    assert!(out.iter().all(|v| v.is_finite()));
    let macs = |m: &OnnxModel| {
        edgeslim_onnx::inspect::inspect(m, &shapes(1))
            .unwrap()
            .total_macs
    };
    let mut no_tokens = keep.clone();
    no_tokens.tokens = vec![None; s.attentions.len()];
    let without = slice::slice(&folded, s, &no_tokens, &p.shapes).unwrap();
    assert!(
        macs(&sliced) < macs(&without),
        "{} vs {}",
        macs(&sliced),
        macs(&without)
    );
}

/// One transformer block on token input `x [N, 17, 48]` with q, k, v from one projection
/// `Split` on the last axis (sizes as an input), 4 heads of 12, Gemm-free, SiLU MLP.
fn split_block() -> OnnxModel {
    use edgeslim_onnx::builder::{GraphBuilder, D};
    use edgeslim_onnx::node::{int, ints};
    let mut r = SplitMix64(17);
    let mut w = |dims: &[usize], s: f32| {
        let n: usize = dims.iter().product();
        Tensor::f32(
            dims.to_vec(),
            (0..n).map(|_| (r.next_f32() * 2.0 - 1.0) * s).collect(),
        )
        .unwrap()
    };
    let mut b = GraphBuilder::new("split-vit", 17);
    let x = b.input_dims(
        "x",
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        &[D::Sym("N"), D::N(17), D::N(48)],
    );
    let wqkv = b.init("qkv.w", &w(&[48, 144], 0.25));
    let bqkv = b.init("qkv.b", &w(&[144], 0.05));
    let sizes = b.init(
        "qkv.sizes",
        &Tensor::i64(vec![3], vec![48, 48, 48]).unwrap(),
    );
    let heads = b.init(
        "heads.shape",
        &Tensor::i64(vec![4], vec![0, 17, 4, 12]).unwrap(),
    );
    let merge = b.init(
        "merge.shape",
        &Tensor::i64(vec![3], vec![0, 17, 48]).unwrap(),
    );
    let scale = b.init("scale", &Tensor::scalar_f32(1.0 / 12f32.sqrt()));
    let qkv = b.node("MatMul", &[&x, &wqkv], vec![]);
    let qkv = b.node("Add", &[&qkv, &bqkv], vec![]);
    b.node_named(
        "Split",
        "qkv.split",
        &[&qkv, &sizes],
        &["q", "k", "v"],
        vec![int("axis", -1)],
    );
    let q = b.node("Reshape", &["q", &heads], vec![]);
    let q = b.node("Transpose", &[&q], vec![ints("perm", &[0, 2, 1, 3])]);
    let k = b.node("Reshape", &["k", &heads], vec![]);
    let k = b.node("Transpose", &[&k], vec![ints("perm", &[0, 2, 3, 1])]);
    let v = b.node("Reshape", &["v", &heads], vec![]);
    let v = b.node("Transpose", &[&v], vec![ints("perm", &[0, 2, 1, 3])]);
    let s = b.node("MatMul", &[&q, &k], vec![]);
    let s = b.node("Mul", &[&s, &scale], vec![]);
    let s = b.node("Softmax", &[&s], vec![int("axis", -1)]);
    let o = b.node("MatMul", &[&s, &v], vec![]);
    let o = b.node("Transpose", &[&o], vec![ints("perm", &[0, 2, 1, 3])]);
    let o = b.node("Reshape", &[&o, &merge], vec![]);
    let wo = b.init("proj.w", &w(&[48, 48], 0.25));
    let o = b.node("MatMul", &[&o, &wo], vec![]);
    let h = b.node("Add", &[&x, &o], vec![]);
    let w1 = b.init("fc1.w", &w(&[48, 96], 0.25));
    let b1 = b.init("fc1.b", &w(&[96], 0.05));
    let f = b.node("MatMul", &[&h, &w1], vec![]);
    let f = b.node("Add", &[&f, &b1], vec![]);
    let sg = b.node("Sigmoid", &[&f], vec![]);
    let f = b.node("Mul", &[&f, &sg], vec![]);
    let w2 = b.init("fc2.w", &w(&[96, 48], 0.2));
    let f = b.node("MatMul", &[&f, &w2], vec![]);
    let y = b.node("Add", &[&h, &f], vec![]);
    b.node_named("Identity", "out", &[&y], &["y"], vec![]);
    b.output("y");
    b.finish()
}

#[test]
fn a_split_fused_block_is_recognised_and_sliced_exactly() {
    let m = split_block();
    let shapes1 = vec!["x=1,17,48".parse().unwrap()];
    let p = prepare_vit(&m, &shapes1).unwrap();
    let s = &p.structure;
    assert_eq!(
        (s.attentions.len(), s.mlps.len()),
        (1, 1),
        "{}",
        s.describe()
    );
    assert!(matches!(s.attentions[0].qkv, Qkv::FusedSplit { .. }));
    assert_eq!((s.attentions[0].heads, s.attentions[0].head_dim), (4, 12));
    assert!(s.attentions[0].proj.bias.is_none());
    let run_tokens = |model: &OnnxModel, x: &[f32]| {
        let opts = LoadOptions {
            input_shapes: vec!["x=2,17,48".parse().unwrap()],
            ..LoadOptions::default()
        };
        let l = LoadedModel::from_bytes(model.to_bytes().unwrap(), Path::new("m"), None, &opts)
            .unwrap();
        let t = TractTensor::from_shape(&[2, 17, 48], x).unwrap();
        tensor_to_f32_vec(&l.run(vec![t]).unwrap()[0]).unwrap()
    };
    let mut r = SplitMix64(5);
    let x: Vec<f32> = (0..2 * 17 * 48).map(|_| r.next_f32() * 2.0 - 1.0).collect();
    for kinds in [
        vec![MaskKind::HeadDims, MaskKind::Mlp],
        vec![MaskKind::Heads, MaskKind::Mlp],
    ] {
        let (mut masked, ms) = masks::insert(&p.model, s, &kinds).unwrap();
        assert!(max_diff(&run_tokens(&m, &x), &run_tokens(&masked, &x)) <= 1e-6);
        let values = random_values(&ms, 3);
        set_values(&mut masked, &ms, &values);
        let folded = masks::fold(&masked, s, &ms, &values).unwrap();
        assert!(max_diff(&run_tokens(&masked, &x), &run_tokens(&folded, &x)) <= 1e-5);
        let keep = budget::keep_at(s, &ms, &values, 0.5, 1);
        let sliced = slice::slice(&folded, s, &keep, &p.shapes).unwrap();
        let zeroed = slice::zero_dropped(&folded, s, &keep).unwrap();
        let d = max_diff(&run_tokens(&zeroed, &x), &run_tokens(&sliced, &x));
        assert!(d <= 1e-5, "{kinds:?}: {d}");
        let sizes = sliced
            .constant("qkv.sizes")
            .map(|t| t.unwrap().to_i64_vec().unwrap());
        let split = sliced
            .graph()
            .node
            .iter()
            .find(|n| n.op_type == "Split")
            .unwrap();
        let now = sliced
            .constant(&split.input[1])
            .unwrap()
            .unwrap()
            .to_i64_vec()
            .unwrap();
        assert!(
            now[0] < 48 && now.iter().all(|&v| v == now[0]),
            "{now:?} (was {sizes:?})"
        );
    }
}
