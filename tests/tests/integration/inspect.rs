//! `edgeslim inspect`: parameter counts equal an independent count of all float tensors;
//! MACs equal hand-computed values.

use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::node::{int, ints};
use edgeslim::onnx::SaveOptions;
use edgeslim_e2e::models::{constant_weights, Weights};
use edgeslim_e2e::{assets, python_check, run_ok};
use serde_json::Value;
use std::path::Path;

fn inspect_json(model: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["inspect", model.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&run_ok("edgeslim", &args).stdout).unwrap()
}

#[test]
fn macs_and_params_by_hand() {
    let mut w = Weights::new(3);
    let mut b = GraphBuilder::new("macs", 13);
    let x = b.input("x", &[1, 4, 10, 10]);
    let cw = b.init("cw", &w.uniform(&[6, 2, 3, 3], 0.3));
    let cb = b.init("cb", &w.uniform(&[6], 0.1));
    let c = b.node(
        "Conv",
        &[&x, &cw, &cb],
        vec![int("group", 2), ints("kernel_shape", &[3, 3])],
    );
    let p = b.node("GlobalAveragePool", &[&c], vec![]);
    let f = b.node("Flatten", &[&p], vec![]);
    let gw = b.init("gw", &w.uniform(&[6, 5], 0.3));
    let gb = b.init("gb", &w.uniform(&[5], 0.1));
    let g = b.node("Gemm", &[&f, &gw, &gb], vec![]);
    let mw = b.init("mw", &w.uniform(&[5, 3], 0.3));
    b.node_named("MatMul", "mm", &[&g, &mw], &["y"], vec![]);
    b.output("y");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("macs.onnx");
    b.finish().save(&path, &SaveOptions::default()).unwrap();

    let j = inspect_json(&path, &[]);
    let node = |op: &str| {
        j["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["op"] == op)
            .unwrap()
            .clone()
    };
    // Conv: out [1,6,8,8], each output sums C/g·k·k = 2·3·3 products.
    assert_eq!(node("Conv")["macs"], 6 * 8 * 8 * 2 * 9);
    assert_eq!(
        node("Conv")["output_shape"],
        serde_json::json!([1, 6, 8, 8])
    );
    assert_eq!(node("Gemm")["macs"], 5 * 6);
    assert_eq!(node("MatMul")["macs"], 3 * 5);
    assert_eq!(j["total_macs"], 6 * 64 * 18 + 30 + 15);
    assert_eq!(node("Conv")["params"], 108 + 6);
    assert_eq!(node("Gemm")["params"], 30 + 5);
    assert_eq!(j["total_params"], 108 + 6 + 35 + 15);
    assert_eq!(
        j["total_params"],
        python_check(&path, None, &["--no-run"]).float_params
    );
}

#[test]
fn params_count_constant_nodes_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.onnx");
    constant_weights()
        .save(&path, &SaveOptions::default())
        .unwrap();
    let j = inspect_json(&path, &[]);
    assert_eq!(j["total_params"], 18 + 3);
    assert_eq!(
        j["total_params"],
        python_check(&path, None, &["--no-run"]).float_params
    );
}

#[test]
fn ppocr_params_match_an_independent_count() {
    let a = assets();
    for (model, shape) in [
        (a.ppocr_cls(), "x=1,3,48,192"),
        (a.ppocr_det(), "x=1,3,640,640"),
    ] {
        let j = inspect_json(&model, &["--input-shape", shape]);
        let expected = python_check(&model, None, &["--no-run"]).float_params;
        assert_eq!(
            j["total_params"].as_u64().unwrap(),
            expected,
            "{}",
            model.display()
        );
        let per_node: u64 = j["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["params"].as_u64().unwrap())
            .sum();
        assert!(
            per_node <= expected && per_node > expected * 9 / 10,
            "per-node params {per_node} of {expected}"
        );
        assert!(j["total_macs"].as_u64().unwrap() > 1_000_000);
        assert!(j["shape_note"].is_null());
    }
    // Without a shape, a dynamic model still lists its nodes and says why shapes are missing.
    let j = inspect_json(&a.ppocr_det(), &[]);
    assert!(j["shape_note"].as_str().unwrap().contains("--input-shape"));
}

/// One MAC count for host and board: `edgeslim inspect` and `edgeslim-rt bench` agree on the
/// original, optimised, pruned and low-rank PP-OCR classifier and detector (the runtime used
/// to report 400 MACs for the optimised classifier: its folded weights had no shape).
#[test]
fn inspect_and_runtime_bench_count_the_same_macs() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    for (name, model, shape) in [
        ("cls", a.ppocr_cls(), "x=1,3,48,192"),
        ("det", a.ppocr_det(), "x=1,3,256,256"),
    ] {
        let m = model.to_str().unwrap();
        let opt = dir.path().join(format!("{name}-opt.onnx"));
        let pruned = dir.path().join(format!("{name}-p50.onnx"));
        let lowrank = dir.path().join(format!("{name}-lr.onnx"));
        let o = |p: &Path| p.to_str().unwrap().to_string();
        run_ok("edgeslim", &["optimize", m, "-o", &o(&opt)]);
        run_ok(
            "edgeslim",
            &[
                "compress",
                "prune",
                m,
                "--ratio",
                "0.5",
                "--input-shape",
                shape,
                "-o",
                &o(&pruned),
            ],
        );
        run_ok(
            "edgeslim",
            &[
                "compress",
                "lowrank",
                m,
                "--method",
                "weight",
                "--budget",
                "0.5",
                "--input-shape",
                shape,
                "--bench-runs",
                "0",
                "-o",
                &o(&lowrank),
            ],
        );
        let mut seen = Vec::new();
        for p in [model.clone(), opt, pruned, lowrank] {
            let host = inspect_json(&p, &["--input-shape", shape])["total_macs"]
                .as_u64()
                .unwrap();
            let json = dir.path().join("bench.json");
            run_ok(
                "edgeslim-rt",
                &[
                    "bench",
                    &o(&p),
                    "--input-shape",
                    shape,
                    "--runs",
                    "1",
                    "--warmup",
                    "0",
                    "--json",
                    &o(&json),
                ],
            );
            let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            let board = report["model"]["total_macs"].as_u64().unwrap();
            assert_eq!(host, board, "{}: inspect vs edgeslim-rt bench", p.display());
            assert!(host > 1_000_000, "{}: {host} MACs", p.display());
            seen.push(host);
        }
        // Optimising is lossless in MACs; pruning and low rank cut them.
        assert_eq!(seen[0], seen[1], "{name}: optimize changed the MACs");
        assert!(seen[2] < seen[0] && seen[3] < seen[0], "{name}: {seen:?}");
    }
}
