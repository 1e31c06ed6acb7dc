//! The model families: every builder's graph passes onnx.checker (full), runs in ONNX Runtime
//! and in tract with matching outputs, is seeded, and names its layers the way pruning and
//! low-rank tools look them up. The tracker's two runtime graphs reproduce its training graph.

use edgeslim::engines::ort::OrtSession;
use edgeslim::inspect::inspect;
use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::node::int;
use edgeslim::onnx::{OnnxModel, SaveOptions, Tensor};
use edgeslim::train::families::cnn::{self, CnnConfig};
use edgeslim::train::families::siamese::{self, SiameseConfig};
use edgeslim::train::families::vit::{self, VitConfig};
use edgeslim_e2e::engines::{random, rel_diff, run_both};
use edgeslim_e2e::{assets, python_check};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

fn save(m: &OnnxModel, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    m.save(&p, &SaveOptions::default()).unwrap();
    p
}

fn assert_engines_agree(model: &Path, inputs: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<Vec<f32>> {
    let (t, o) = run_both(model, inputs);
    assert_eq!(t.len(), o.len());
    for (i, (a, b)) in t.iter().zip(&o).enumerate() {
        assert!(
            a.iter().all(|v| v.is_finite()),
            "output {i} has non-finite values"
        );
        let r = rel_diff(a, b);
        assert!(
            r <= 1e-4,
            "{}: output {i}: tract vs ORT relative difference {r}",
            model.display()
        );
    }
    o
}

fn report(m: &OnnxModel, label: &str, shapes: &[&str]) -> (u64, u64) {
    let shapes: Vec<_> = shapes.iter().map(|s| s.parse().unwrap()).collect();
    let i = inspect(m, &shapes).unwrap();
    assert!(i.shape_note.is_none(), "{label}: {:?}", i.shape_note);
    println!(
        "{label}: {} params, {} MACs ({:.2} M), {} nodes",
        i.total_params,
        i.total_macs,
        i.total_macs as f64 / 1e6,
        i.nodes.len()
    );
    (i.total_params, i.total_macs)
}

fn count(m: &OnnxModel, op: &str) -> usize {
    m.graph().node.iter().filter(|n| n.op_type == op).count()
}

fn init_dims(m: &OnnxModel, name: &str) -> Vec<usize> {
    let t = m
        .initializer(name)
        .unwrap_or_else(|| panic!("no initializer {name}"));
    Tensor::from_proto(t).unwrap().dims
}

#[test]
fn cnn_passes_checker_and_engines_agree_at_two_batch_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let m = cnn::build(&CnnConfig::default()).unwrap();
    let p = save(&m, dir.path(), "cnn.onnx");
    let c = python_check(&p, None, &["--input-shape", "x=4,1,28,28"]);
    assert_eq!(c.checker, "ok");
    assert_eq!(c.outputs[0].shape, vec![4, 10]);
    for n in [1usize, 5] {
        let x = random(n * 784, n as u64);
        let o = assert_engines_agree(&p, &[("x", vec![n, 1, 28, 28], x)]);
        assert_eq!(o[0].len(), n * 10);
    }
    let (params, macs) = report(&m, "cnn default", &["x=1,1,28,28"]);
    // By hand: convs 1·32·9 + 32·64·9 + 64·128·9, BN 4·(32+64+128), Gemm 1152·10 + 10.
    assert_eq!(params, 288 + 18432 + 73728 + 4 * 224 + 11530);
    // Convs at 28², 14², 7² plus the Gemm.
    assert_eq!(
        macs,
        32 * 9 * 784 + 32 * 64 * 9 * 196 + 64 * 128 * 9 * 49 + 11520
    );
    // Names tools look for.
    assert_eq!(init_dims(&m, "features.0.conv.weight"), vec![32, 1, 3, 3]);
    assert_eq!(init_dims(&m, "classifier.weight"), vec![10, 1152]);
    assert_eq!(m.metadata("edgeslim.family"), Some("cnn"));
}

#[test]
fn vit_passes_checker_engines_agree_and_names_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = VitConfig::default();
    let m = vit::build(&cfg).unwrap();
    let p = save(&m, dir.path(), "vit.onnx");
    let c = python_check(&p, None, &["--input-shape", "x=2,1,28,28"]);
    assert_eq!(c.checker, "ok");
    assert_eq!(c.outputs[0].shape, vec![2, 10]);
    for n in [1usize, 3] {
        let x = random(n * 784, 10 + n as u64);
        assert_engines_agree(&p, &[("x", vec![n, 1, 28, 28], x)]);
    }
    report(&m, "vit default", &["x=1,1,28,28"]);
    // A real ViT: ≥ 4 pre-norm blocks, ≥ 2 heads, LayerNormalization, exact GELU, class token.
    assert!(cfg.depth >= 4 && cfg.heads >= 2);
    assert_eq!(count(&m, "LayerNormalization"), 2 * cfg.depth + 1);
    assert_eq!(count(&m, "Softmax"), cfg.depth);
    assert_eq!(count(&m, "Erf"), cfg.depth);
    let names: std::collections::HashSet<&str> =
        m.graph().node.iter().map(|n| n.name.as_str()).collect();
    for i in 0..cfg.depth {
        for l in [
            "norm1",
            "attn.q",
            "attn.k",
            "attn.v",
            "attn.softmax",
            "attn.proj",
            "norm2",
            "mlp.fc1",
            "mlp.gelu",
            "mlp.fc2",
            "add1",
            "add2",
        ] {
            let n = format!("blocks.{i}.{l}");
            assert!(names.contains(n.as_str()), "missing node {n}");
        }
        assert_eq!(
            init_dims(&m, &format!("blocks.{i}.attn.q.weight")),
            vec![64, 64]
        );
        assert_eq!(
            init_dims(&m, &format!("blocks.{i}.mlp.fc1.weight")),
            vec![64, 128]
        );
    }
    assert_eq!(init_dims(&m, "cls_token"), vec![1, 1, 64]);
    assert_eq!(init_dims(&m, "pos_embed"), vec![1, 50, 64]);
    assert_eq!(init_dims(&m, "patch_embed.proj.weight"), vec![64, 1, 4, 4]);
    assert_eq!(init_dims(&m, "head.weight"), vec![10, 64]);
    // The layer named `blocks.0.attn.q` is the MatMul holding `blocks.0.attn.q.weight`.
    let q = m
        .graph()
        .node
        .iter()
        .find(|n| n.name == "blocks.0.attn.q")
        .unwrap();
    assert_eq!(
        (q.op_type.as_str(), q.input[1].as_str()),
        ("MatMul", "blocks.0.attn.q.weight")
    );
    // Every float initializer is a parameter: fixed numbers live in Constant nodes.
    let float_inits: u64 = m
        .graph()
        .initializer
        .iter()
        .map(|t| Tensor::from_proto(t).unwrap())
        .filter(|t| t.is_float())
        .map(|t| t.len() as u64)
        .sum();
    let per_block = 4 * (64 * 64 + 64) + (64 * 128 + 128) + (128 * 64 + 64) + 4 * 64;
    assert_eq!(
        float_inits,
        (16 * 64 + 64) + 64 + 50 * 64 + 4 * per_block + 2 * 64 + 650
    );
}

#[test]
fn vit_attention_is_a_real_softmax_over_tokens() {
    // The attention map, read from ORT as an extra output: 4 heads, each a softmax over the
    // 50 tokens (49 patches + the class token) for each of the 50 queries.
    let cfg = VitConfig {
        depth: 1,
        ..VitConfig::default()
    };
    let mut m = vit::build(&cfg).unwrap();
    m.graph_mut()
        .output
        .push(edgeslim::onnx::builder::value_info(
            "blocks.0.attn.softmax",
            onnx_protobuf::tensor_proto::DataType::FLOAT,
            None,
        ));
    let dir = tempfile::tempdir().unwrap();
    let p = save(&m, dir.path(), "vit1.onnx");
    assets();
    let mut ort = OrtSession::load(&p, 1).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 28, 28]), random(784, 3)).unwrap();
    let out = ort.run(&[("x".to_string(), x)]).unwrap();
    let a = &out[1].1;
    assert_eq!(a.shape(), &[1, 4, 50, 50]);
    for h in 0..4 {
        for t in 0..50 {
            let row: f32 = (0..50).map(|j| a[[0, h, t, j]]).sum();
            assert!((row - 1.0).abs() < 1e-5, "softmax row sums to {row}");
        }
    }
}

/// The probe behind the tracker's export form: a depth-wise Conv (group = C) whose weight is a
/// computed tensor, and one whose weight is a graph input, run in tract and ORT and match a
/// direct cross-correlation written here.
#[test]
fn depthwise_conv_with_runtime_weights_runs_in_tract_and_ort() {
    let (c, hs, k) = (8usize, 22usize, 6usize);
    let ho = hs - k + 1;
    let s = random(c * hs * hs, 1);
    let z = random(c * k * k, 2);
    let mut reference = vec![0.0f32; c * ho * ho];
    for ch in 0..c {
        for y in 0..ho {
            for x in 0..ho {
                let mut acc = 0.0;
                for i in 0..k {
                    for j in 0..k {
                        acc += s[ch * hs * hs + (y + i) * hs + x + j] * z[ch * k * k + i * k + j];
                    }
                }
                reference[ch * ho * ho + y * ho + x] = acc;
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    // (1) Weight as a graph input, search batch N = 3 against one kernel.
    let mut b = GraphBuilder::new("dw_input", 17);
    b.input_dims(
        "s",
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        &[
            edgeslim::onnx::builder::D::Sym("N"),
            (c as i64).into(),
            (hs as i64).into(),
            (hs as i64).into(),
        ],
    );
    b.input("k", &[c as i64, 1, k as i64, k as i64]);
    b.node_named(
        "Conv",
        "xcorr",
        &["s", "k"],
        &["y"],
        vec![int("group", c as i64)],
    );
    b.output_dims(
        "y",
        &[
            edgeslim::onnx::builder::D::Sym("N"),
            (c as i64).into(),
            (ho as i64).into(),
            (ho as i64).into(),
        ],
    );
    let p1 = save(&b.finish(), dir.path(), "dw_input.onnx");
    let s3: Vec<f32> = s.iter().chain(&s).chain(&s).copied().collect();
    let o = assert_engines_agree(
        &p1,
        &[
            ("s", vec![3, c, hs, hs], s3),
            ("k", vec![c, 1, k, k], z.clone()),
        ],
    );
    for n in 0..3 {
        let r = rel_diff(&o[0][n * c * ho * ho..(n + 1) * c * ho * ho], &reference);
        assert!(r < 1e-5, "graph-input kernel, batch item {n}: {r}");
    }
    // (2) Weight computed inside the graph (Reshape of another input), the training form.
    let mut b = GraphBuilder::new("dw_computed", 17);
    b.input("s", &[1, c as i64, hs as i64, hs as i64]);
    b.input("z", &[1, c as i64, k as i64, k as i64]);
    let shape = b.init(
        "shape",
        &Tensor::i64(vec![4], vec![c as i64, 1, k as i64, k as i64]).unwrap(),
    );
    let kk = b.node("Reshape", &["z", &shape], vec![]);
    b.node_named(
        "Conv",
        "xcorr",
        &["s", &kk],
        &["y"],
        vec![int("group", c as i64)],
    );
    b.output_dims(
        "y",
        &[
            1.into(),
            (c as i64).into(),
            (ho as i64).into(),
            (ho as i64).into(),
        ],
    );
    let p2 = save(&b.finish(), dir.path(), "dw_computed.onnx");
    let o = assert_engines_agree(
        &p2,
        &[("s", vec![1, c, hs, hs], s), ("z", vec![1, c, k, k], z)],
    );
    assert!(rel_diff(&o[0], &reference) < 1e-5);
    assert_eq!(
        python_check(&p1, None, &["--input-shape", "s=2,8,22,22"]).checker,
        "ok"
    );
    assert_eq!(python_check(&p2, None, &[]).checker, "ok");
}

#[test]
fn siamese_graphs_pass_checker_and_runtime_pair_reproduces_training_graph() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SiameseConfig::default();
    let (t, s, m) = (cfg.template_size, cfg.search_size, cfg.response_size());
    assert_eq!(
        (cfg.template_features(), cfg.search_features(), m),
        (9, 25, 17)
    );
    let batch = 2;
    let train = siamese::build_train(&cfg, batch).unwrap();
    let pt = save(&train, dir.path(), "siamese_train.onnx");
    let c = python_check(&pt, None, &[]);
    assert_eq!(c.checker, "ok");
    assert_eq!(c.outputs[0].shape, vec![batch, 1, m, m]);

    // Perturb the trained weights (so the copy is tested, not the shared seed) and export.
    let mut trained = train.clone();
    let names: Vec<String> = trained
        .graph()
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let mut w = Tensor::from_proto(trained.initializer(name).unwrap()).unwrap();
        if !w.is_float() {
            continue;
        }
        let noise = random(w.len(), 100 + i as u64);
        let v: Vec<f32> = w
            .to_f32_vec()
            .iter()
            .zip(&noise)
            .map(|(a, n)| a + 0.05 * n)
            .collect();
        let v = if name.ends_with("running_var") {
            v.iter().map(|x| x.abs() + 0.5).collect()
        } else {
            v
        };
        w = Tensor::f32(w.dims.clone(), v).unwrap();
        trained.set_initializer(name, &w);
    }
    let pt2 = save(&trained, dir.path(), "siamese_trained.onnx");
    let (template, search) = siamese::export_tracker(&trained, &cfg).unwrap();
    let ptm = save(&template, dir.path(), "template.onnx");
    let psr = save(&search, dir.path(), "search.onnx");
    assert_eq!(python_check(&ptm, None, &[]).checker, "ok");
    assert_eq!(
        python_check(&psr, None, &["--input-shape", "search=3,3,127,127"]).checker,
        "ok"
    );

    let zs = random(batch * 3 * t * t, 7);
    let xs = random(batch * 3 * s * s, 8);
    let full = assert_engines_agree(
        &pt2,
        &[
            ("template", vec![batch, 3, t, t], zs.clone()),
            ("search", vec![batch, 3, s, s], xs.clone()),
        ],
    );
    for b in 0..batch {
        let z = zs[b * 3 * t * t..(b + 1) * 3 * t * t].to_vec();
        let kernel = assert_engines_agree(&ptm, &[("template", vec![1, 3, t, t], z)]);
        let k = cfg.channels();
        let tf = cfg.template_features();
        assert_eq!(kernel[0].len(), k * tf * tf);
        // Three search images (as three scales would be), the middle one is sample b's.
        let x = &xs[b * 3 * s * s..(b + 1) * 3 * s * s];
        let other = random(3 * s * s, 50 + b as u64);
        let x3: Vec<f32> = other.iter().chain(x).chain(&other).copied().collect();
        let r = assert_engines_agree(
            &psr,
            &[
                ("search", vec![3, 3, s, s], x3),
                ("kernel", vec![k, 1, tf, tf], kernel[0].clone()),
            ],
        );
        let mine = &r[0][m * m..2 * m * m];
        let want = &full[0][b * m * m..(b + 1) * m * m];
        let d = rel_diff(mine, want);
        assert!(
            d < 1e-4,
            "sample {b}: runtime pair vs training graph differ by {d}"
        );
    }
    report(&template, "siamese template", &[]);
    report(&search, "siamese search (1 scale)", &["search=1,3,127,127"]);
    report(&train, "siamese train (batch 2)", &[]);
    assert_eq!(
        search.metadata("edgeslim.tracker.response_size"),
        Some("17")
    );
}

#[test]
fn siamese_stride_8_with_siamfc_sizes_builds() {
    let cfg = SiameseConfig {
        stride: 8,
        template_size: 127,
        search_size: 255,
        ..Default::default()
    };
    cfg.validate().unwrap();
    assert_eq!(cfg.response_size(), 17);
    let dir = tempfile::tempdir().unwrap();
    let p = save(&siamese::build_search(&cfg).unwrap(), dir.path(), "s8.onnx");
    assert_eq!(
        python_check(&p, None, &["--input-shape", "search=1,3,255,255"]).checker,
        "ok"
    );
}

#[test]
fn weights_are_seeded_and_initialised_as_documented() {
    let a = cnn::build(&CnnConfig::default()).unwrap();
    let b = cnn::build(&CnnConfig::default()).unwrap();
    let c = cnn::build(&CnnConfig {
        seed: 1,
        ..Default::default()
    })
    .unwrap();
    let w = |m: &OnnxModel, n: &str| {
        Tensor::from_proto(m.initializer(n).unwrap())
            .unwrap()
            .to_f32_vec()
    };
    assert_eq!(
        w(&a, "features.1.conv.weight"),
        w(&b, "features.1.conv.weight")
    );
    assert_ne!(
        w(&a, "features.1.conv.weight"),
        w(&c, "features.1.conv.weight")
    );
    // Kaiming uniform: bound sqrt(6 / fan_in), fan_in = 32·9; variance bound²/3.
    let v = w(&a, "features.1.conv.weight");
    let bound = (6.0f32 / 288.0).sqrt();
    assert!(v.iter().all(|x| x.abs() <= bound));
    let var = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
    assert!(
        (var / (bound * bound / 3.0) - 1.0).abs() < 0.05,
        "variance {var}"
    );
    assert!(w(&a, "features.1.bn.weight").iter().all(|&x| x == 1.0));
    assert!(w(&a, "features.1.bn.running_var").iter().all(|&x| x == 1.0));
    assert!(w(&a, "features.1.bn.running_mean")
        .iter()
        .all(|&x| x == 0.0));
    assert!(w(&a, "classifier.bias").iter().all(|&x| x == 0.0));
    let vit = vit::build(&VitConfig::default()).unwrap();
    let pos = w(&vit, "pos_embed");
    let std = (pos.iter().map(|x| x * x).sum::<f32>() / pos.len() as f32).sqrt();
    assert!(
        (0.014..0.02).contains(&std) && pos.iter().all(|x| x.abs() <= 0.04),
        "pos_embed std {std}"
    );
}

#[test]
fn bad_family_configs_name_the_field() {
    let e = vit::build(&VitConfig {
        heads: 3,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("heads") && e.contains("dim 64"), "{e}");
    let e = vit::build(&VitConfig {
        patch: 5,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("patch"), "{e}");
    let e = cnn::build(&CnnConfig {
        widths: vec![8; 6],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("widths"), "{e}");
    let e = siamese::build_search(&SiameseConfig {
        search_size: 129,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("search_size") && e.contains("try 127"), "{e}");
    let e = siamese::build_train(
        &SiameseConfig {
            stride: 8,
            ..Default::default()
        },
        2,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("template_size"), "{e}");
    let train = cnn::build(&CnnConfig::default()).unwrap();
    let e = siamese::export_tracker(&train, &SiameseConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("backbone.conv1.weight"), "{e}");
}

/// The Siamese family on a pretrained backbone (ImageNet MobileNetV2 cut after block 3): the
/// geometry matches the own backbone's (17×17 responses at stride 4), the runtime pair passes
/// the checker and agrees between engines, and the backbone holds the imported weights.
#[test]
fn siamese_on_pretrained_mobilenetv2_builds_and_holds_the_imported_weights() {
    edgeslim_e2e::assets();
    let cfg = SiameseConfig {
        pretrained: Some("mobilenetv2".into()),
        pretrained_blocks: 3,
        ..Default::default()
    };
    cfg.validate().unwrap();
    assert_eq!(
        (
            cfg.template_features(),
            cfg.search_features(),
            cfg.response_size()
        ),
        (16, 32, 17)
    );
    let dir = tempfile::tempdir().unwrap();
    let template = siamese::build_template(&cfg).unwrap();
    let search = siamese::build_search(&cfg).unwrap();
    // The backbone's weights are the checkpoint's (batch norm folded into the first conv).
    let sd = edgeslim::import::state::StateDict::read(
        &edgeslim_e2e::assets().file(edgeslim::assets::MOBILENETV2_PT),
    )
    .unwrap();
    let folded = sd.conv_bn("features.0.0", "features.0.1", 1e-5).unwrap();
    let w = Tensor::from_proto(template.initializer("features.0.0.weight").unwrap()).unwrap();
    assert_eq!(w.to_f32_vec(), folded.weight.to_f32_vec());
    assert!(
        template.initializer("features.4.conv.0.weight").is_none(),
        "cut after block 3"
    );
    let ptm = save(&template, dir.path(), "template.onnx");
    let psr = save(&search, dir.path(), "search.onnx");
    assert_eq!(python_check(&ptm, None, &[]).checker, "ok");
    assert_eq!(
        python_check(&psr, None, &["--input-shape", "search=3,3,127,127"]).checker,
        "ok"
    );
    let (t, s, c) = (cfg.template_size, cfg.search_size, cfg.channels());
    let kernel = assert_engines_agree(
        &ptm,
        &[("template", vec![1, 3, t, t], random(3 * t * t, 1))],
    );
    assert_eq!(kernel[0].len(), c * 16 * 16);
    let r = assert_engines_agree(
        &psr,
        &[
            ("search", vec![2, 3, s, s], random(2 * 3 * s * s, 2)),
            ("kernel", vec![c, 1, 16, 16], kernel[0].clone()),
        ],
    );
    assert_eq!(r[0].len(), 2 * 17 * 17);
    let e = SiameseConfig {
        pretrained: Some("mobilenetv2".into()),
        pretrained_blocks: 6,
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("stride") && e.contains("block 6"), "{e}");
}
