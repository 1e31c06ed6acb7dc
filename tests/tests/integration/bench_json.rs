//! `edgeslim-rt bench` writes the report of docs/architecture.md: every field present, per-node
//! times adding up to the run time, ordered percentiles; PP-OCRv4 det runs at 640×640.

use edgeslim_e2e::{assets, run_ok};
use serde_json::Value;
use std::path::Path;

fn bench(model: &Path, shape: &str, runs: &str, json: &Path) -> Value {
    run_ok(
        "edgeslim-rt",
        &[
            "bench",
            model.to_str().unwrap(),
            "--input-shape",
            shape,
            "--warmup",
            "2",
            "--runs",
            runs,
            "--json",
            json.to_str().unwrap(),
        ],
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| {
        v.get(k)
            .unwrap_or_else(|| panic!("report lacks field '{path}' (at '{k}')"))
    })
}

fn num(v: &Value, path: &str) -> f64 {
    get(v, path)
        .as_f64()
        .unwrap_or_else(|| panic!("'{path}' is not a number: {}", get(v, path)))
}

fn check_schema(r: &Value, runs: usize) {
    for field in [
        "schema_version",
        "tool.name",
        "tool.version",
        "label",
        "created_unix",
        "model.path",
        "model.sha256",
        "model.size_bytes",
        "model.opset",
        "model.onnx_nodes",
        "model.plan_nodes",
        "model.total_macs",
        "backend",
        "threads",
        "optimized",
        "inputs",
        "outputs",
        "load.load_ms",
        "load.typing_ms",
        "load.optimize_ms",
        "latency.runs",
        "latency.warmup",
        "latency.min_ms",
        "latency.mean_ms",
        "latency.p50_ms",
        "latency.p90_ms",
        "latency.p99_ms",
        "latency.max_ms",
        "latency.std_ms",
        "latency.samples_ms",
        "throughput_per_s",
        "memory.peak_rss_bytes",
        "profile.run_mean_ms",
        "profile.node_sum_mean_ms",
        "profile.coverage",
        "profile.nodes",
        "profile.op_types",
        "profile.tract_op_types",
        "device.arch",
        "device.cores",
        "device.cpu_model",
        "device.governor",
        "device.cur_freq_mhz",
        "device.max_freq_mhz",
        "device.thermal_before",
        "device.thermal_after",
        "device.throttling_before",
        "device.emulated",
        "target_profile",
        "comparison",
    ] {
        get(r, field);
    }
    assert_eq!(get(r, "backend"), "tract");
    assert_eq!(get(r, "device.arch"), std::env::consts::ARCH);
    assert_eq!(
        get(r, "device.cores").as_u64().unwrap() as usize,
        std::thread::available_parallelism().unwrap().get()
    );
    assert_eq!(get(r, "latency.samples_ms").as_array().unwrap().len(), runs);
    let order = [
        "latency.min_ms",
        "latency.p50_ms",
        "latency.p90_ms",
        "latency.p99_ms",
        "latency.max_ms",
    ];
    for w in order.windows(2) {
        assert!(num(r, w[0]) <= num(r, w[1]), "{} > {}", w[0], w[1]);
    }
    let mean = num(r, "latency.mean_ms");
    assert!(num(r, "latency.min_ms") <= mean && mean <= num(r, "latency.max_ms"));
    assert!((num(r, "throughput_per_s") - 1000.0 / mean).abs() < 1e-6 * num(r, "throughput_per_s"));
    assert!(num(r, "memory.peak_rss_bytes") > 1e6);

    // Per-node times add up to the measured run time (within a few percent: the remainder
    // is the plan's own bookkeeping between nodes).
    let coverage = num(r, "profile.coverage");
    assert!(
        (0.93..=1.0001).contains(&coverage),
        "node times cover {coverage} of the run"
    );
    let nodes = get(r, "profile.nodes").as_array().unwrap();
    let sum: f64 = nodes.iter().map(|n| n["mean_ms"].as_f64().unwrap()).sum();
    assert!((sum - num(r, "profile.node_sum_mean_ms")).abs() < 1e-6 * sum.max(1.0));
    let shares: f64 = nodes.iter().map(|n| n["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6);
    // Node MACs add up to the model's MACs; the sorted order is by time.
    let macs: u64 = nodes.iter().map(|n| n["macs"].as_u64().unwrap()).sum();
    assert_eq!(macs, get(r, "model.total_macs").as_u64().unwrap());
    assert!(nodes
        .windows(2)
        .all(|w| w[0]["mean_ms"].as_f64() >= w[1]["mean_ms"].as_f64()));
    let op_ms: f64 = get(r, "profile.op_types")
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["mean_ms"].as_f64().unwrap())
        .sum();
    assert!((op_ms - sum).abs() < 1e-6 * sum.max(1.0));
}

#[test]
fn cls_report_is_complete_and_consistent() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cls.json");
    let r = bench(&a.ppocr_cls(), "x=1,3,48,192", "20", &json);
    check_schema(&r, 20);
    // The model is identified by content.
    let bytes = std::fs::read(a.ppocr_cls()).unwrap();
    let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(get(&r, "model.sha256"), sha.as_str());
    assert_eq!(
        get(&r, "inputs").as_array().unwrap()[0]["shape"],
        serde_json::json!([1, 3, 48, 192])
    );
    // Conv dominates a MobileNetV3: it is among the op types and carries MACs.
    let conv = get(&r, "profile.op_types")
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "Conv")
        .unwrap()
        .clone();
    assert!(conv["macs"].as_u64().unwrap() > 10_000_000);
    // Same MACs as inspect computes from the host IR.
    let inspect: Value = serde_json::from_str(
        &run_ok(
            "edgeslim",
            &[
                "inspect",
                a.ppocr_cls().to_str().unwrap(),
                "--input-shape",
                "x=1,3,48,192",
                "--json",
            ],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(inspect["total_macs"], get(&r, "model.total_macs").clone());
}

/// PP-OCRv4 det declares symbolic output dims that clash with a fixed 640×640 input.
#[test]
fn det_runs_at_640() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("det.json");
    let r = bench(&a.ppocr_det(), "x=1,3,640,640", "3", &json);
    check_schema(&r, 3);
    assert_eq!(
        get(&r, "outputs").as_array().unwrap()[0]["shape"],
        serde_json::json!([1, 1, 640, 640])
    );
}

#[test]
fn threads_are_recorded() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("t.json");
    run_ok(
        "edgeslim-rt",
        &[
            "bench",
            a.ppocr_cls().to_str().unwrap(),
            "--input-shape",
            "x=1,3,48,192",
            "--runs",
            "3",
            "--threads",
            "2",
            "--target",
            "rpi4",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["threads"], 2);
    assert_eq!(r["target_profile"], "rpi4");
}
