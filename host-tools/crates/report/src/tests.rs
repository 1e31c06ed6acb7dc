//! Rendering tests on reports built in code: two runs with different latencies, the first
//! with a profile and an engine comparison, the second with neither.

use super::*;
use edgeslim_runtime::device::{DeviceInfo, ThermalZone, Throttling};
use edgeslim_runtime::model::{Dim, LoadTimings, TensorSpec};
use edgeslim_runtime::report::{
    EngineComparison, MemoryInfo, ModelInfo, NodeProfile, OpTypeProfile, OutputDiff, Profile,
    ToolInfo,
};
use edgeslim_runtime::stats::LatencyStats;

const NASTY_NODE: &str = "conv<&>\"1'";

fn device(emulated: bool) -> DeviceInfo {
    DeviceInfo {
        arch: "aarch64".into(),
        os: "linux".into(),
        kernel: None,
        hostname: Some("pi".into()),
        cpu_model: Some("Cortex-A72".into()),
        board_model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
        cores: 4,
        mem_total_bytes: Some(4 << 30),
        governor: None,
        cur_freq_mhz: vec![Some(1500.0), None],
        max_freq_mhz: Some(1800.0),
        thermal_before: vec![ThermalZone {
            zone: "thermal_zone0".into(),
            kind: Some("cpu-thermal".into()),
            temp_c: 47.2,
        }],
        thermal_after: vec![ThermalZone {
            zone: "thermal_zone0".into(),
            kind: Some("cpu-thermal".into()),
            temp_c: 55.9,
        }],
        throttling_before: None,
        throttling_after: Some(Throttling {
            source: "/sys/devices/platform/soc/soc:firmware/get_throttled".into(),
            raw: Some("0x0".into()),
            under_voltage_now: Some(false),
            freq_capped_now: Some(false),
            throttled_now: Some(false),
            throttled_since_boot: Some(false),
            throttle_events: None,
        }),
        emulated,
    }
}

fn node(name: &str, op: &str, ms: f64, share: f64, macs: u64) -> NodeProfile {
    NodeProfile {
        name: name.into(),
        onnx_op: op.into(),
        tract_ops: vec!["OptMatMul".into()],
        mean_ms: ms,
        share,
        macs,
        output_shape: Some(vec![1, 16, 32, 32]),
    }
}

fn op_type(op: &str, count: usize, ms: f64, share: f64) -> OpTypeProfile {
    OpTypeProfile {
        op: op.into(),
        count,
        mean_ms: ms,
        share,
        macs: 0,
    }
}

fn profile() -> Profile {
    Profile {
        run_mean_ms: 10.0,
        node_sum_mean_ms: 9.8,
        coverage: 0.98,
        achieved_gflops: 12.5,
        nodes: vec![
            node(NASTY_NODE, "Conv", 6.0, 0.61, 1_000_000),
            node("relu_1", "Relu", 2.5, 0.26, 0),
            node("gemm_out", "Gemm", 1.3, 0.13, 50_000),
        ],
        op_types: vec![
            op_type("Conv", 1, 6.0, 0.61),
            op_type("Relu", 1, 2.5, 0.26),
            op_type("Gemm", 1, 1.3, 0.13),
        ],
        tract_op_types: vec![op_type("OptMatMul", 2, 7.3, 0.74)],
        attribution_note: "by name prefix".into(),
    }
}

fn comparison() -> EngineComparison {
    let other = LatencyStats::from_samples(vec![12.0, 12.5, 13.0, 12.2, 12.8], 2);
    EngineComparison {
        other_backend: "onnxruntime".into(),
        other_version: Some("1.22.0".into()),
        latency_ratio_mean: 0.8,
        latency_ratio_p50: 0.79,
        other_latency: other,
        outputs: vec![OutputDiff {
            name: "logits".into(),
            shape: vec![1, 1000],
            max_abs_diff: 3.5e-6,
            max_abs_reference: 12.25,
        }],
    }
}

fn report(label: &str, samples: Vec<f64>, macs: u64, peak_rss: u64) -> BenchReport {
    let latency = LatencyStats::from_samples(samples, 3);
    BenchReport {
        schema_version: edgeslim_runtime::report::SCHEMA_VERSION,
        tool: ToolInfo::this("edgeslim"),
        label: label.into(),
        created_unix: 1_795_787_449,
        model: ModelInfo {
            path: format!("/models/{label}.onnx"),
            sha256: "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9".into(),
            size_bytes: 4_745_517,
            opset: 13,
            producer: "pytorch".into(),
            onnx_nodes: 3,
            plan_nodes: 3,
            total_macs: macs,
        },
        backend: "tract".into(),
        threads: 2,
        optimized: true,
        inputs: vec![TensorSpec {
            name: "input".into(),
            dtype: "float".into(),
            declared: vec![Dim::Symbolic("batch".into()), Dim::Fixed(3)],
            shape: vec![1, 3],
        }],
        outputs: vec![],
        load: LoadTimings {
            load_ms: 12.0,
            typing_ms: 3.0,
            optimize_ms: 40.0,
        },
        throughput_per_s: latency.throughput_per_s(),
        latency,
        memory: MemoryInfo {
            rss_before_load_bytes: None,
            rss_after_load_bytes: Some(30 << 20),
            peak_rss_bytes: Some(peak_rss),
        },
        profile: None,
        device: device(false),
        target_profile: Some("rpi4".into()),
        comparison: None,
        raw_tract: None,
        pipeline: None,
        tiled: None,
    }
}

/// Run 1 (baseline): profiled, compared with ONNX Runtime. Run 2: slower, no profile.
fn two_runs() -> Vec<ReportInput> {
    let mut base = report(
        "base-model",
        vec![9.0, 10.0, 11.0, 10.0, 10.5],
        1_050_000,
        80 << 20,
    );
    base.profile = Some(profile());
    base.comparison = Some(comparison());
    let mut slim = report(
        "slim-model",
        vec![24.0, 25.0, 26.0, 25.0, 27.0],
        525_000,
        60 << 20,
    );
    slim.device = device(true);
    vec![
        ReportInput::new("runs/base.json", base),
        ReportInput::new("runs/slim & small.json", slim),
    ]
}

#[test]
fn page_names_every_run_and_its_source() {
    let runs = two_runs();
    let html = render_html(&runs, "Two runs");
    for run in &runs {
        assert!(
            html.contains(&run.report.label),
            "label {}",
            run.report.label
        );
    }
    assert!(html.contains("<title>Two runs</title>"));
    assert!(html.contains("runs/slim &amp; small.json"));
    assert!(html.contains("d2a7720d45a5…"), "short sha256");
}

#[test]
fn ratios_against_the_baseline_are_computed_and_named() {
    let runs = two_runs();
    let html = render_html(&runs, "r");
    // p50 of [9,10,10,10.5,11] is 10; of [24,25,25,26,27] is 25: 2.5× slower.
    let (base, slim) = (10.0_f64, 25.0_f64);
    assert_eq!(runs[0].report.latency.p50_ms, base);
    assert_eq!(runs[1].report.latency.p50_ms, slim);
    let p50 = format!("{:.2}× baseline (slower)", slim / base);
    assert_eq!(p50, "2.50× baseline (slower)");
    assert!(html.contains(&p50), "p50 ratio cell");
    assert!(html.contains("0.50× baseline (fewer MACs)"));
    assert!(html.contains("0.75× baseline (less memory)"));
    assert!(html.contains(">baseline<"));
}

#[test]
fn one_svg_per_chart() {
    let runs = two_runs();
    let html = render_html(&runs, "r");
    // Latency distribution + op types (run 1 only has a profile) + run 1's top nodes.
    assert_eq!(html.matches("<svg").count(), 3);
    // Without any profile only the latency chart remains.
    assert_eq!(render_html(&runs[1..], "r").matches("<svg").count(), 1);
    // Chart text is real text: axis titles and the run rows are in the SVG.
    assert!(html.contains("latency per run (ms)"));
    assert!(html.contains("1 · base-model (onnxruntime)"));
}

#[test]
fn text_from_reports_is_escaped() {
    let html = render_html(&two_runs(), "a <b> & \"c\"");
    assert!(html.contains("conv&lt;&amp;&gt;"), "escaped node name");
    assert!(
        !html.contains("conv<&>"),
        "raw node name must not reach the page"
    );
    assert!(html.contains("<title>a &lt;b&gt; &amp; &quot;c&quot;</title>"));
}

#[test]
fn page_is_self_contained() {
    let html = render_html(&two_runs(), "r");
    assert!(!html.contains("<script"));
    assert!(!html.contains("http://"));
    assert!(!html.contains("https://"));
    assert!(!html.contains("<link"));
    assert!(html.starts_with("<!DOCTYPE html>"));
}

#[test]
fn comparison_shows_both_engines_and_output_diffs() {
    let html = render_html(&two_runs(), "r");
    assert!(html.contains("tract vs onnxruntime 1.22.0"));
    assert!(html.contains("0.80× (tract faster)"));
    assert!(html.contains("3.500e-6"), "max abs diff");
    assert!(html.contains("1.225e1"), "max |reference|");
    // ORT p50 of [12,12.2,12.5,12.8,13] is 12.5, next to tract's 10.
    assert!(html.contains("<td class=\"num\">12.50</td>"));
}

#[test]
fn device_facts_and_absent_values() {
    let html = render_html(&two_runs(), "r");
    assert!(html.contains("EMULATED — timings meaningless"));
    assert!(html.contains("47.2 → 55.9"), "hottest zone before → after");
    assert!(html.contains("+8.7"), "thermal change");
    // Governor and kernel are null: shown as absent, not invented.
    assert!(html.contains("<th>Governor</th><td>—</td><td>—</td>"));
    assert!(html.contains("kernel —"));
    assert!(html.contains("throttled now: no"));
}

#[test]
fn write_html_replaces_the_file_atomically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("report.html");
    let runs = two_runs();
    write_html(&runs, "r", &out).expect("write");
    write_html(&runs, "r", &out).expect("rewrite");
    let text = std::fs::read_to_string(&out).expect("read back");
    assert_eq!(text, render_html(&runs, "r"));
    let files = std::fs::read_dir(dir.path()).expect("list").count();
    assert_eq!(files, 1, "no temporary file left behind");
}

#[test]
fn no_runs_and_no_samples_still_render() {
    let html = render_html(&[], "empty");
    assert!(html.contains("No benchmark reports were given."));
    let mut run = report("nothing", vec![], 0, 1);
    run.memory.peak_rss_bytes = None;
    let html = render_html(&[ReportInput::new("x.json", run)], "r");
    assert!(html.contains("Chart not drawn"));
    assert_eq!(html.matches("<svg").count(), 0);
}

#[test]
fn groups_have_their_own_baseline() {
    let mut runs = two_runs();
    let extra = runs[0].clone();
    runs.push(extra);
    runs[0].group = Some("a".into());
    runs[1].group = Some("a".into());
    runs[2].group = Some("b".into());
    assert_eq!(super::baseline_of(&runs, 1), 0);
    assert_eq!(super::baseline_of(&runs, 2), 2);
    let html = render_html(&runs, "groups");
    // Run 3 is its own group's baseline; run 2 is compared with run 1.
    assert_eq!(
        html.matches(">baseline<").count(),
        5 * 2,
        "five ratio rows, two baselines"
    );
}
