//! `edgeslim compress quantize`: fp16 and int8 QDQ models pass onnx.checker, run in ONNX
//! Runtime and tract with agreeing outputs (Softmax heads stay float: tract 0.23 returns all
//! ones when a QDQ chain quantizes the final Softmax), and the report says what tract runs.
//!
//! int8 models here use `--reduce-range` (7-bit weights): ONNX Runtime's u8×s8 kernels on x86
//! CPUs without VNNI saturate in 16 bits with full 8-bit weights, and then ORT's optimised
//! session no longer computes what the QDQ graph means (see docs/methods/quantize.md).

use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::node::int;
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim_e2e::models::Weights;
use edgeslim_e2e::{assert_equivalent, assets, python_check, run, run_ok};
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Gemm → Relu → Gemm → Softmax, input [1, 16].
fn mlp_softmax(dir: &Path) -> PathBuf {
    let mut w = Weights::new(51);
    let mut b = GraphBuilder::new("mlp", 13);
    let x = b.input("x", &[1, 16]);
    let w1 = b.init("w1", &w.uniform(&[32, 16], 0.5));
    let b1 = b.init("b1", &w.uniform(&[32], 0.2));
    let h = b.node("Gemm", &[&x, &w1, &b1], vec![int("transB", 1)]);
    let r = b.node("Relu", &[&h], vec![]);
    let w2 = b.init("w2", &w.uniform(&[6, 32], 0.5));
    let b2 = b.init("b2", &w.uniform(&[6], 0.2));
    let l = b.node("Gemm", &[&r, &w2, &b2], vec![int("transB", 1)]);
    b.node_named("Softmax", "head", &[&l], &["probs"], vec![int("axis", 1)]);
    b.output("probs");
    let p = dir.join("mlp.onnx");
    b.finish().save(&p, &SaveOptions::default()).unwrap();
    p
}

fn calib_npy(dir: &Path, n: usize, shape: &[usize]) -> String {
    let per: usize = shape.iter().product();
    let t = Weights::new(7).uniform(&[n * per], 1.0);
    let mut dims = vec![n];
    dims.extend_from_slice(shape);
    let arr =
        edgeslim_runtime::tract_onnx::prelude::Tensor::from_shape(&dims, &t.to_f32_vec()).unwrap();
    let p = dir.join("calib.npy");
    edgeslim_runtime::input::write_npy(&p, &arr).unwrap();
    format!("npy:{}", p.display())
}

fn quantize(model: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "compress",
        "quantize",
        s(model),
        "-o",
        s(out),
        "--bench-runs",
        "3",
        "--json",
    ];
    args.extend_from_slice(extra);
    let r = run_ok("edgeslim", &args);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn ops(p: &Path) -> Vec<String> {
    OnnxModel::load(p)
        .unwrap()
        .graph()
        .node
        .iter()
        .map(|n| n.op_type.clone())
        .collect()
}

#[test]
fn int8_mlp_keeps_softmax_float_and_engines_agree() {
    let dir = tempfile::tempdir().unwrap();
    let src = mlp_softmax(dir.path());
    let calib = calib_npy(dir.path(), 60, &[1, 16]);
    for method in ["minmax", "percentile", "entropy"] {
        let out = dir.path().join(format!("q-{method}.onnx"));
        let r = quantize(
            &src,
            &out,
            &[
                "--int8",
                "--per-channel",
                "--reduce-range",
                "--method",
                method,
                "--calib",
                &calib,
            ],
        );
        let o = ops(&out);
        assert_eq!(
            o.iter().filter(|x| *x == "QuantizeLinear").count(),
            2,
            "{o:?}"
        );
        // The Softmax reads the float Gemm output directly: no Q/DQ around the head.
        let m = OnnxModel::load(&out).unwrap();
        let head = m
            .graph()
            .node
            .iter()
            .find(|n| n.op_type == "Softmax")
            .unwrap();
        let producer = m
            .graph()
            .node
            .iter()
            .find(|n| n.output[0] == head.input[0])
            .unwrap();
        assert_eq!(producer.op_type, "Gemm");
        assert_eq!(python_check(&out, None, &[]).checker, "ok");
        let e = &r["engines"];
        assert!(e["ort_error"].is_null(), "{e}");
        assert_eq!(e["top1_agreement"], 1.0, "{method}: {e}");
        assert!(e["max_abs_diff"].as_f64().unwrap() < 0.05, "{method}: {e}");
        let f = &r["fidelity"];
        assert!(f["mean_cosine"].as_f64().unwrap() > 0.98, "{method}: {f}");
        assert!(r["plan_after"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("tract runs"));
    }
}

#[test]
fn int8_and_fp16_on_ppocr_cls() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let cls = a.ppocr_cls();
    let shape = ["--input-shape", "x=1,3,48,192"];

    let q8 = dir.path().join("cls-int8.onnx");
    let rep = dir.path().join("rep");
    let mut args = vec![
        "--int8",
        "--per-channel",
        "--reduce-range",
        "--calib",
        "ppocr-text",
        "--calib-samples",
        "64",
        "--report",
        s(&rep),
    ];
    args.extend_from_slice(&shape);
    let r = quantize(&cls, &q8, &args);
    assert_eq!(
        python_check(&q8, None, &["--input-shape", "x=1,3,48,192"]).checker,
        "ok"
    );
    let e = &r["engines"];
    assert!(e["ort_error"].is_null(), "{e}");
    assert!(
        e["top1_agreement"].as_f64().unwrap() >= 0.98,
        "tract vs ORT: {e}"
    );
    // The trap: a quantized Softmax makes tract answer all ones; ours stays float.
    let f = &r["fidelity"];
    assert!(f["top1_agreement"].as_f64().unwrap() > 0.8, "{f}");
    // Per-channel scales need opset 13; the clean-up's HardSwish may already have moved it to 14.
    assert!(
        r["int8"]["opset_after"].as_i64().unwrap() >= 13,
        "{}",
        r["int8"]
    );
    assert!(std::fs::read_to_string(rep.join("index.html"))
        .unwrap()
        .contains("What tract runs"));

    let h = dir.path().join("cls-fp16.onnx");
    let mut args = vec!["--fp16", "--calib", "ppocr-text", "--calib-samples", "16"];
    args.extend_from_slice(&shape);
    let r = quantize(&cls, &h, &args);
    let before = r["before"]["file_bytes"].as_u64().unwrap();
    let after = r["after"]["file_bytes"].as_u64().unwrap();
    assert!(after * 10 < before * 6, "fp16 file {after} vs {before}");
    assert_equivalent(
        &python_check(&h, Some(&cls), &["--input-shape", "x=1,3,48,192"]),
        2e-3,
    );
    assert!(r["engines"]["top1_agreement"].as_f64().unwrap() == 1.0);
}

#[test]
fn fp16_compute_runs_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let src = mlp_softmax(dir.path());
    let out = dir.path().join("h.onnx");
    let calib = calib_npy(dir.path(), 20, &[1, 16]);
    let r = quantize(&src, &out, &["--fp16", "--fp16-compute", "--calib", &calib]);
    assert_eq!(python_check(&out, None, &["--no-run"]).checker, "ok");
    let f = &r["fidelity"];
    assert!(f["max_abs_diff"].as_f64().unwrap() < 1e-2, "{f}");
    let o = ops(&out);
    assert_eq!(o.first().map(String::as_str), Some("Cast"));
    assert_eq!(o.last().map(String::as_str), Some("Cast"));
}

#[test]
fn quantize_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = mlp_softmax(dir.path());
    let out = dir.path().join("o.onnx");
    let r = run(
        "edgeslim",
        &["compress", "quantize", s(&src), "--int8", "-o", s(&out)],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--calib: int8 needs calibration data"),
        "{}",
        r.stderr
    );
    let r = run(
        "edgeslim",
        &["compress", "quantize", s(&src), "-o", s(&out)],
    );
    assert_eq!(r.code, 2, "clap: one of --fp16/--int8 is required");
}

/// `--format qoperator`: the zoo CNN becomes QLinearConv/QLinearMatMul (its Relus folded into
/// the products' output ranges), passes onnx.checker, runs in ONNX Runtime and tract with
/// agreeing answers, keeps its accuracy on held-out MNIST, and tract's plan really runs
/// integer matrix kernels (the QDQ form of the same model runs none).
#[test]
fn int8_operator_form_runs_integer_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let src = edgeslim_e2e::workspace().join("models/mnist-cnn.onnx");
    let out = dir.path().join("q8.onnx");
    let common = ["--int8", "--calib", "mnist", "--calib-samples", "200"];
    let mut args = common.to_vec();
    args.extend(["--format", "qoperator"]);
    let r = quantize(&src, &out, &args);
    let o = ops(&out);
    assert!(o.iter().any(|x| x == "QLinearConv"), "{o:?}");
    assert!(o.iter().any(|x| x == "QLinearMatMul"), "{o:?}");
    assert!(!o.iter().any(|x| x == "Relu"), "Relus folded: {o:?}");
    assert!(
        r["qoperator"]["relus_folded"].as_u64().unwrap() >= 1,
        "{}",
        r["qoperator"]
    );
    assert_eq!(python_check(&out, None, &[]).checker, "ok");
    let e = &r["engines"];
    assert!(e["ort_error"].is_null(), "{e}");
    assert!(
        e["top1_agreement"].as_f64().unwrap() >= 0.98,
        "tract vs ORT: {e}"
    );
    let f = &r["fidelity"];
    assert!(
        f["top1_agreement"].as_f64().unwrap() >= 0.97,
        "vs float: {f}"
    );
    let plan = &r["plan_after"];
    assert!(
        plan["integer_matmul_nodes"].as_u64().unwrap() >= 2,
        "{plan}"
    );
    let kernels = plan["kernels"].as_array().unwrap();
    assert!(
        kernels
            .iter()
            .any(|k| k.as_str().unwrap().contains("_mmm_i32_")),
        "{plan}"
    );

    let qdq = dir.path().join("qdq.onnx");
    let r = quantize(&src, &qdq, &common);
    assert_eq!(
        r["plan_after"]["integer_matmul_nodes"], 0,
        "{}",
        r["plan_after"]
    );
}
