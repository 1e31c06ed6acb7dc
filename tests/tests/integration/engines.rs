//! tract and ONNX Runtime agree on real models fed real photographs, and `edgeslim bench
//! --backend both` reports the agreement and the latency ratio.

use edgeslim::engines::ort::OrtSession;
use edgeslim_e2e::{assets, run_ok};
use edgeslim_runtime::input::{image_to_tensor, open_image, tensor_to_f32_vec, ImagePrep};
use edgeslim_runtime::{LoadOptions, LoadedModel};
use ndarray::{ArrayD, IxDyn};

/// PP-OCR's own preprocessing: BGR, (x/255 − 0.5)/0.5.
fn ppocr_prep() -> ImagePrep {
    ImagePrep {
        scale: 1.0 / 255.0,
        mean: [0.5; 3],
        std: [0.5; 3],
        bgr: true,
    }
}

fn compare(model: &std::path::Path, shape: [usize; 4], image: &str) -> (f64, f64) {
    let a = assets();
    let opts = LoadOptions {
        input_shapes: vec![
            format!("x={},{},{},{}", shape[0], shape[1], shape[2], shape[3])
                .parse()
                .unwrap(),
        ],
        ..Default::default()
    };
    let tract = LoadedModel::load(model, &opts).unwrap();
    let img = open_image(&a.image(image)).unwrap();
    let x = image_to_tensor(&img, &shape, &ppocr_prep()).unwrap();
    let xs = tensor_to_f32_vec(&x).unwrap();
    let t_out = tensor_to_f32_vec(&tract.run(vec![x]).unwrap()[0]).unwrap();
    let mut ort = OrtSession::load(model, 1).unwrap();
    let arr = ArrayD::from_shape_vec(IxDyn(&shape), xs).unwrap();
    let o_out = ort.run(&[("x".to_string(), arr)]).unwrap();
    let o: Vec<f32> = o_out[0].1.iter().copied().collect();
    assert_eq!(o.len(), t_out.len());
    let diff = t_out
        .iter()
        .zip(&o)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    let scale = o.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
    (diff, scale)
}

#[test]
fn tract_and_ort_agree_on_ppocr_cls() {
    for image in ["text.png", "page.png"] {
        let (diff, scale) = compare(&assets().ppocr_cls(), [1, 3, 48, 192], image);
        assert!(scale > 0.5, "softmax probabilities");
        assert!(diff < 1e-5, "{image}: max |tract - ORT| = {diff}");
    }
}

#[test]
fn tract_and_ort_agree_on_ppocr_det() {
    let (diff, scale) = compare(&assets().ppocr_det(), [1, 3, 640, 640], "page.png");
    assert!(
        scale > 0.9,
        "a page of text lights up the probability map: max {scale}"
    );
    // A 2.3 GMAC detector: f32 summation order differs between engines; both agree to
    // well under one thousandth of a probability.
    assert!(diff < 2e-4, "max |tract - ORT| = {diff}");
}

#[test]
fn bench_both_reports_ratio_and_output_agreement() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("both.json");
    run_ok(
        "edgeslim",
        &[
            "bench",
            a.ppocr_cls().to_str().unwrap(),
            "--input-shape",
            "x=1,3,48,192",
            "--backend",
            "both",
            "--runs",
            "10",
            "--warmup",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let r = edgeslim_runtime::report::BenchReport::read(&json).unwrap();
    let c = r.comparison.expect("comparison with ORT");
    assert_eq!(c.other_latency.runs, 10);
    let expected = r.latency.p50_ms / c.other_latency.p50_ms;
    assert!((c.latency_ratio_p50 - expected).abs() < 1e-9 * expected);
    assert_eq!(c.outputs.len(), 1);
    assert!(c.outputs[0].max_abs_diff < 1e-5 && c.outputs[0].max_abs_reference > 0.1);
    assert!(r.profile.is_some(), "tract side keeps its per-node profile");
    assert!(c.other_version.unwrap_or_default().starts_with("1."));
}

#[test]
fn report_renders_several_runs() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let (j1, j2, html) = (
        dir.path().join("a.json"),
        dir.path().join("b.json"),
        dir.path().join("r.html"),
    );
    let cls = a.ppocr_cls();
    run_ok(
        "edgeslim-rt",
        &[
            "bench",
            cls.to_str().unwrap(),
            "--input-shape",
            "x=1,3,48,192",
            "--runs",
            "5",
            "--label",
            "one-thread",
            "--json",
            j1.to_str().unwrap(),
        ],
    );
    run_ok(
        "edgeslim",
        &[
            "bench",
            cls.to_str().unwrap(),
            "--input-shape",
            "x=1,3,48,192",
            "--runs",
            "5",
            "--backend",
            "ort",
            "--label",
            "ort-run",
            "--json",
            j2.to_str().unwrap(),
        ],
    );
    run_ok(
        "edgeslim",
        &[
            "report",
            j1.to_str().unwrap(),
            j2.to_str().unwrap(),
            "-o",
            html.to_str().unwrap(),
        ],
    );
    let page = std::fs::read_to_string(&html).unwrap();
    for needle in ["one-thread", "ort-run", "<svg", "baseline", "p99"] {
        assert!(page.contains(needle), "report lacks {needle}");
    }
    assert!(!page.contains("<script") && !page.contains("https://"));
    let r2 = edgeslim_runtime::report::BenchReport::read(&j2).unwrap();
    assert_eq!(r2.backend, "ort");
    assert!(r2.profile.is_none());
}
