//! Bad input gets one clear line naming the file, node or field, and exit code 1: never a
//! panic, never a half-written output.

use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::SaveOptions;
use edgeslim_e2e::{assets, run, Run};
use std::path::Path;

fn assert_clean_error(r: &Run, needle: &str) {
    assert_eq!(r.code, 1, "exit code; stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(line.contains(needle), "expected '{needle}' in: {line}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn not_onnx_truncated_and_missing_files() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "this is not a model").unwrap();
    let bytes = std::fs::read(a.ppocr_cls()).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let missing = dir.path().join("missing.onnx");
    for (path, needle) in [
        (&text, "not a readable ONNX model"),
        (&truncated, "not a readable ONNX model"),
        (&missing, "No such file"),
    ] {
        assert_clean_error(&run("edgeslim", &["inspect", s(path)]), s(path));
        assert_clean_error(&run("edgeslim", &["inspect", s(path)]), needle);
        assert_clean_error(
            &run("edgeslim-rt", &["bench", s(path), "--runs", "1"]),
            needle,
        );
        let out = dir.path().join("o.onnx");
        assert_clean_error(
            &run("edgeslim", &["optimize", s(path), "-o", s(&out)]),
            needle,
        );
        assert!(!out.exists(), "no output for bad input");
    }
}

#[test]
fn unknown_op_names_the_node() {
    let mut b = GraphBuilder::new("bad", 13);
    let x = b.input("x", &[1, 4]);
    b.node_named("FrobnicateTensor", "the_culprit", &[&x], &["y"], vec![]);
    b.output("y");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("unknown.onnx");
    b.finish().save(&p, &SaveOptions::default()).unwrap();
    let r = run("edgeslim-rt", &["bench", s(&p), "--runs", "1"]);
    assert_clean_error(&r, "node 'the_culprit' uses op 'FrobnicateTensor'");
}

#[test]
fn shapes_that_do_not_fit() {
    let a = assets();
    let cls = a.ppocr_cls();
    let cases = [
        ("x=1,4,48,192", "axis 1 is fixed to 3"),
        ("y=1,3,48,192", "input 'y': no such input"),
        ("x=1,3,48", "rank 4"),
        ("x=1,3,100000,100000", "over the limit"),
    ];
    for (shape, needle) in cases {
        assert_clean_error(
            &run(
                "edgeslim-rt",
                &["bench", s(&cls), "--input-shape", shape, "--runs", "1"],
            ),
            needle,
        );
    }
    assert_clean_error(
        &run("edgeslim-rt", &["bench", s(&cls), "--runs", "1"]),
        "--input-shape x=",
    );
    // Caught by the argument parser: clap's usage error (exit 2), reason on the first line.
    let r = run(
        "edgeslim-rt",
        &["bench", s(&cls), "--input-shape", "x=1,3,-48,192"],
    );
    assert_eq!(r.code, 2);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("'-48' is not a non-negative integer dimension"),
        "{first}"
    );
}

#[test]
fn image_that_does_not_decode() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("broken.png");
    std::fs::write(&img, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let r = run(
        "edgeslim-rt",
        &[
            "run",
            s(&a.ppocr_cls()),
            "--input-shape",
            "x=1,3,48,192",
            "--input",
            s(&img),
        ],
    );
    assert_clean_error(&r, "broken.png: image does not decode");
}

#[test]
fn never_overwrites_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    edgeslim_e2e::models::messy_cnn()
        .save(&p, &SaveOptions::default())
        .unwrap();
    let before = std::fs::read(&p).unwrap();
    let r = run("edgeslim", &["optimize", s(&p), "-o", s(&p)]);
    assert_clean_error(&r, "refusing to overwrite the input model");
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

/// Semantically invalid attributes on which tract's analysis panics (a zero stride or kernel,
/// a pad list of the wrong length, a zero slice step): one line naming the model and the
/// stage, exit code 1, for every such class.
#[test]
fn invalid_attributes_are_errors_not_panics() {
    use edgeslim::onnx::node::ints;
    use edgeslim::onnx::Tensor;
    let dir = tempfile::tempdir().unwrap();
    let conv = |attrs: Vec<_>| {
        let mut b = GraphBuilder::new("bad", 13);
        let x = b.input("x", &[1, 3, 8, 8]);
        let w = b.init("w", &Tensor::f32(vec![4, 3, 3, 3], vec![0.1; 108]).unwrap());
        b.node_named("Conv", "bad_conv", &[&x, &w], &["y"], attrs);
        b.output("y");
        b.finish()
    };
    let pool = |attrs: Vec<_>| {
        let mut b = GraphBuilder::new("bad", 13);
        let x = b.input("x", &[1, 3, 8, 8]);
        b.node_named("MaxPool", "bad_pool", &[&x], &["y"], attrs);
        b.output("y");
        b.finish()
    };
    let slice_step0 = {
        let mut b = GraphBuilder::new("bad", 13);
        let x = b.input("x", &[1, 8]);
        let i = |b: &mut GraphBuilder, n: &str, v: i64| {
            b.init(n, &Tensor::i64(vec![1], vec![v]).unwrap())
        };
        let (s0, e, a, st) = (
            i(&mut b, "s", 0),
            i(&mut b, "e", 4),
            i(&mut b, "a", 1),
            i(&mut b, "st", 0),
        );
        b.node_named(
            "Slice",
            "bad_slice",
            &[&x, &s0, &e, &a, &st],
            &["y"],
            vec![],
        );
        b.output("y");
        b.finish()
    };
    let cases = [
        ("conv_stride0", conv(vec![ints("strides", &[0, 0])])),
        ("conv_pads3", conv(vec![ints("pads", &[1, 1, 1])])),
        ("pool_kernel0", pool(vec![ints("kernel_shape", &[0, 0])])),
        (
            "pool_stride0",
            pool(vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[0, 0]),
            ]),
        ),
        ("slice_step0", slice_step0),
    ];
    for (name, model) in cases {
        let p = dir.path().join(format!("{name}.onnx"));
        // Written raw: our own writer refuses to produce an invalid model.
        std::fs::write(&p, model.to_bytes().unwrap()).unwrap();
        let r = run(
            "edgeslim-rt",
            &["bench", s(&p), "--runs", "1", "--warmup", "0"],
        );
        assert_clean_error(&r, &format!("{name}.onnx"));
    }
}

/// The semantic rules checked before tract (or a host pass) sees a model: each broken model
/// is refused by the runtime, by `inspect` and by `optimize` with one line naming the node and
/// the rule, and `optimize` writes nothing. These are the "wrong successes" and allocation
/// aborts of the reliability probe: each ran before, giving an answer or taking the machine.
#[test]
fn semantic_rules_are_checked_before_the_engine() {
    use edgeslim::onnx::node::{float, int, ints};
    use edgeslim::onnx::Tensor;
    let dir = tempfile::tempdir().unwrap();
    let single = |dims: &[i64], op: &str, extra: &[(&str, Tensor)], attrs: Vec<_>| {
        let mut b = GraphBuilder::new("bad", 13);
        let x = b.input("x", dims);
        let mut inputs = vec![x];
        for (n, t) in extra {
            inputs.push(b.init(n, t));
        }
        let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
        b.node_named(op, "the_node", &refs, &["y"], attrs);
        b.output("y");
        b.finish()
    };
    let f32s = |dims: Vec<usize>, v: f32| {
        let n = dims.iter().product();
        Tensor::f32(dims, vec![v; n]).unwrap()
    };
    let i64s = |v: Vec<i64>| Tensor::i64(vec![v.len()], v).unwrap();
    let bn = |var: f32, eps: f32| {
        single(
            &[1, 2, 4, 4],
            "BatchNormalization",
            &[
                ("scale", f32s(vec![2], 1.0)),
                ("bias", f32s(vec![2], 0.0)),
                ("mean", f32s(vec![2], 0.0)),
                ("var", f32s(vec![2], var)),
            ],
            vec![float("epsilon", eps)],
        )
    };
    let mut no_outputs = single(&[1, 4], "Relu", &[], vec![]);
    no_outputs.graph_mut().output.clear();
    let mut unproduced = single(&[1, 4], "Relu", &[], vec![]);
    unproduced.graph_mut().output[0].name = "nowhere".into();
    let mut string_raw = single(&[1, 4], "Relu", &[("w", f32s(vec![4], 1.0))], vec![]);
    string_raw.graph_mut().node[0].input.truncate(1);
    string_raw.graph_mut().initializer[0].data_type = 8; // STRING, bytes left in raw_data
    let mut raw_short = single(&[1, 4], "Add", &[("w", f32s(vec![4], 1.0))], vec![]);
    raw_short.graph_mut().initializer[0].raw_data.truncate(10);
    let cases: Vec<(&str, _, &str)> = vec![
        (
            "softmax_axis100",
            single(&[1, 10], "Softmax", &[], vec![int("axis", 100)]),
            "axis = 100 is outside [-2, 1]",
        ),
        // Found by `cargo fuzz` (fuzz/run.sh): tract's Flatten rule slices the shape with the
        // axis while typing, before any check after typing could run; the rank is known
        // before typing here (declared input -> Relu -> Flatten).
        (
            "flatten_axis65_after_a_relu",
            {
                let mut b = GraphBuilder::new("bad", 13);
                let x = b.input("x", &[1, 3, 4, 4]);
                let r = b.node("Relu", &[&x], vec![]);
                b.node_named("Flatten", "the_node", &[&r], &["y"], vec![int("axis", 65)]);
                b.output("y");
                b.finish()
            },
            "axis = 65 is outside [-4, 4] for an input of rank 4",
        ),
        // Found by `cargo fuzz`: tract computes a resize's output size in i64, and a scale of
        // 4.5e24 wrapped to a negative dimension (an assertion, an abort on the board).
        (
            "resize_scale_4_5e24",
            single(
                &[1, 2, 3, 3],
                "Resize",
                &[
                    ("roi", f32s(vec![0], 0.0)),
                    (
                        "scales",
                        Tensor::f32(vec![4], vec![1.0, 1.0, 4.5e24, 2.0]).unwrap(),
                    ),
                ],
                vec![],
            ),
            "makes one axis longer than the limit",
        ),
        (
            "resize_scales_past_the_budget",
            single(
                &[1, 2, 3, 3],
                "Resize",
                &[
                    ("roi", f32s(vec![0], 0.0)),
                    (
                        "scales",
                        Tensor::f32(vec![4], vec![1.0, 1.0, 1e5, 1e5]).unwrap(),
                    ),
                ],
                vec![],
            ),
            "over the limit",
        ),
        (
            "resize_scale_3e29_and_0_95",
            single(
                &[1, 2, 3, 3],
                "Resize",
                &[
                    ("roi", f32s(vec![0], 0.0)),
                    (
                        "scales",
                        Tensor::f32(vec![4], vec![3e29, 0.95, 2.0, 2.0]).unwrap(),
                    ),
                ],
                vec![],
            ),
            "makes one axis longer than the limit",
        ),
        (
            "resize_scale_negative",
            single(
                &[1, 2, 3, 3],
                "Resize",
                &[
                    ("roi", f32s(vec![0], 0.0)),
                    (
                        "scales",
                        Tensor::f32(vec![4], vec![1.0, 1.0, -2.0, 2.0]).unwrap(),
                    ),
                ],
                vec![],
            ),
            "is not a positive finite number",
        ),
        // Found by docs/results/reliability-probe.sh: `optimize` does not type the model, so
        // the group check after typing never ran and it wrote a model ORT refuses.
        (
            "conv_group_2_40",
            single(
                &[1, 4, 8, 8],
                "Conv",
                &[("w", f32s(vec![4, 1, 3, 3], 0.1))],
                vec![int("group", 1 << 40), ints("kernel_shape", &[3, 3])],
            ),
            "group = 1099511627776 does not divide the weights' first axis of 4",
        ),
        (
            "flatten_without_input",
            {
                let mut m = single(&[1, 4], "Flatten", &[], vec![int("axis", 1)]);
                m.graph_mut().node[0].input.clear();
                m
            },
            "input 0 is missing (Flatten needs at least 1)",
        ),
        (
            "cast_to_2_40",
            single(&[1, 4], "Cast", &[], vec![int("to", 1 << 40)]),
            "to = 1099511627776 is not an ONNX element type",
        ),
        (
            "flatten_axis_minus5",
            single(&[1, 3, 4, 4], "Flatten", &[], vec![int("axis", -5)]),
            "axis = -5 is outside [-4, 4]",
        ),
        (
            "pool_larger_than_input",
            single(
                &[1, 3, 4, 4],
                "MaxPool",
                &[],
                vec![ints("kernel_shape", &[8, 8])],
            ),
            "larger than the padded input",
        ),
        (
            "pool_pads_not_smaller",
            single(
                &[1, 3, 8, 8],
                "MaxPool",
                &[],
                vec![ints("kernel_shape", &[2, 2]), ints("pads", &[2, 2, 2, 2])],
            ),
            "not smaller than the window",
        ),
        (
            "transpose_not_a_permutation",
            single(&[1, 3, 8], "Transpose", &[], vec![ints("perm", &[0, 0, 1])]),
            "not a permutation",
        ),
        ("no_outputs", no_outputs, "declares no outputs"),
        (
            "unproduced_output",
            unproduced,
            "'nowhere' is produced by no node",
        ),
        ("bn_negative_variance", bn(-1.0, 1e-5), "variance[0] = -1"),
        ("bn_nan_epsilon", bn(1.0, f32::NAN), "epsilon = NaN"),
        (
            "string_raw",
            string_raw,
            "STRING tensor stored as raw bytes",
        ),
        ("raw_too_short", raw_short, "holds 10 raw bytes"),
        (
            "constant_of_shape_80gb",
            single(&[1, 4], "Add", &[], vec![]),
            "over the limit",
        ),
        (
            "tile_2_31",
            single(&[1], "Tile", &[("r", i64s(vec![1 << 31]))], vec![]),
            "over the limit",
        ),
    ];
    for (name, mut model, needle) in cases {
        if name == "constant_of_shape_80gb" {
            // y = x + ConstantOfShape([20e9]): 80 GB of float zeros declared by one constant.
            let shape = i64s(vec![20_000_000_000]).to_proto("shape");
            let g = model.graph_mut();
            g.initializer.push(shape);
            let cos =
                edgeslim::onnx::node::make("ConstantOfShape", &["shape"], &["big"], "cos", vec![]);
            g.node.insert(0, cos);
            g.node[1].input.push("big".into());
        }
        let p = dir.path().join(format!("{name}.onnx"));
        std::fs::write(&p, model.to_bytes().unwrap()).unwrap();
        let out = dir.path().join(format!("{name}.out.onnx"));
        eprintln!("case {name}");
        for args in [
            vec![
                "edgeslim-rt",
                "bench",
                s(&p),
                "--runs",
                "1",
                "--warmup",
                "0",
            ],
            vec!["edgeslim", "inspect", s(&p)],
            vec!["edgeslim", "optimize", s(&p), "-o", s(&out)],
        ] {
            eprintln!("  {args:?}");
            let r = run(args[0], &args[1..]);
            assert_clean_error(&r, needle);
            assert!(
                r.stderr.contains(&format!("{name}.onnx")),
                "{name}: {}",
                r.stderr
            );
        }
        assert!(!out.exists(), "{name}: optimize wrote an output");
    }
}

/// Semantic mutants of a real model (PP-OCR's classifier): every integer attribute class the
/// reliability probe found (window sizes, strides, dilations, pads, groups, axes, perms) set
/// to hostile values, one mutation per model. Each must load or be refused by the checks in
/// front of tract, never reach tract's panic (the board build aborts on one).
#[test]
fn semantic_mutants_of_a_real_model_never_reach_a_panic() {
    use edgeslim::onnx::OnnxModel;
    use edgeslim_runtime::model::{LoadOptions, TypedOnnx};
    let base = OnnxModel::load(&assets().ppocr_cls()).unwrap();
    // Values no ONNX rule allows for these attributes (plausible values such as a pad of 3
    // can make a shape contradiction that tract's symbolic solver spends minutes on; that
    // class is documented as open in docs/results/reliability.md).
    let hostile: [i64; 5] = [-2, -1, 0, 1 << 31, 1 << 40];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    // Every integer attribute of every node: where the probe's classes live.
    let targets: Vec<(usize, usize)> = base
        .graph()
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.attribute
                .iter()
                .enumerate()
                .filter(|(_, a)| !a.ints.is_empty() || a.i != 0)
                .map(move |(j, _)| (i, j))
        })
        .collect();
    let opts = LoadOptions {
        input_shapes: vec!["1,3,48,192".parse().unwrap()],
        ..LoadOptions::default()
    };
    let (mut loaded, mut refused, mut panicked) = (0, 0, Vec::new());
    for k in 0..160 {
        let mut m = base.clone();
        let (node, attr) = targets[next(targets.len())];
        let n = &mut m.graph_mut().node[node];
        let a = &mut n.attribute[attr];
        let what = if a.ints.is_empty() {
            a.i = hostile[next(hostile.len())];
            format!("{} {}={}", n.name, a.name, a.i)
        } else if next(4) == 0 {
            a.ints.pop();
            format!("{} {} shortened", n.name, a.name)
        } else {
            let j = next(a.ints.len());
            a.ints[j] = hostile[next(hostile.len())];
            format!("{} {}={:?}", n.name, a.name, a.ints)
        };
        let label = std::path::PathBuf::from(format!("mutant{k}.onnx"));

        match TypedOnnx::from_bytes(
            m.to_bytes().unwrap(),
            &label,
            None,
            &opts,
            std::time::Instant::now(),
        ) {
            Ok(_) => loaded += 1,
            Err(e) if e.to_string().contains("tract cannot analyse") => {
                panicked.push(format!("{what}: {e}"))
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!(
        "mutants: {loaded} loaded, {refused} refused, {} reached a panic",
        panicked.len()
    );
    assert!(
        refused > 100,
        "the mutations are hostile enough to be refused"
    );
    assert!(
        panicked.is_empty(),
        "reached tract's panic:\n{}",
        panicked.join("\n")
    );
}

/// The axis checks before typing reach through the shape computations of a real model: PP-OCR
/// cls's Softmax sits behind Shape -> Slice -> Concat -> Reshape -> MatMul, and `optimize`
/// (which does not type the model) wrote it with axis = 100 before (found by
/// docs/results/reliability-probe.sh).
#[test]
fn a_real_models_softmax_axis_is_checked_through_its_reshape() {
    use edgeslim::onnx::OnnxModel;
    let mut m = OnnxModel::load(&assets().ppocr_cls()).unwrap();
    let softmax = m
        .graph_mut()
        .node
        .iter_mut()
        .find(|n| n.op_type == "Softmax")
        .unwrap();
    softmax
        .attribute
        .iter_mut()
        .find(|a| a.name == "axis")
        .unwrap()
        .i = 100;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cls-axis100.onnx");
    std::fs::write(&p, m.to_bytes().unwrap()).unwrap();
    let out = dir.path().join("out.onnx");
    let r = run("edgeslim", &["optimize", s(&p), "-o", s(&out)]);
    assert_clean_error(&r, "axis = 100 is outside [-2, 1] for an input of rank 2");
    assert!(!out.exists());
}

/// A *plausible* pad that makes the shapes contradict each other further down (PP-OCR cls, its
/// fourth Conv padded [0, 0, 3, 0]) keeps tract's symbolic solver busy for minutes: the load
/// gives up at the typing deadline with one line instead of hanging.
#[test]
fn a_stuck_shape_solver_ends_at_the_typing_deadline() {
    use edgeslim::onnx::OnnxModel;
    let mut m = OnnxModel::load(&assets().ppocr_cls()).unwrap();
    let conv = m
        .graph_mut()
        .node
        .iter_mut()
        .filter(|n| n.op_type == "Conv")
        .nth(3)
        .unwrap();
    conv.attribute
        .iter_mut()
        .find(|a| a.name == "pads")
        .unwrap()
        .ints = vec![0, 0, 3, 0];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cls-pads.onnx");
    std::fs::write(&p, m.to_bytes().unwrap()).unwrap();
    let out = std::process::Command::new(edgeslim_e2e::bin("edgeslim-rt"))
        .args([
            "bench",
            s(&p),
            "--input-shape",
            "x=1,3,48,192",
            "--runs",
            "1",
        ])
        .env("EDGESLIM_TYPING_DEADLINE_S", "3")
        .output()
        .unwrap();
    let r: Run = out.into();
    assert_clean_error(&r, "did not finish within 3 s");
}
