//! Gaussian anomaly detection end to end: Ledoit–Wolf against an independent numpy
//! computation, the exported detector against the host computation and across engines
//! (tract, ONNX Runtime, onnx.checker), metadata round trips, AUROC on generated data, the
//! board's `inspect` with its live view, and clear messages on bad input.

use edgeslim::anomaly::data::{make_data, Defect, MakeDataOptions};
use edgeslim::anomaly::gaussian::{ledoit_wolf, Samples};
use edgeslim::anomaly::{export, fit, Detector, FitOptions, Prep, Shrinkage, PPOCR_LAYERS};
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim_e2e::{assets, bin, run, run_ok};
use edgeslim_runtime::inspect::{DetectorMeta, Inspector};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn python() -> String {
    std::env::var("EDGESLIM_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run a Python snippet with `args`, return its stdout.
fn py(code: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Ledoit–Wolf estimator as the paper writes it (Ledoit & Wolf 2004, Lemma 3.2 / eq. 14),
/// with its own per-observation loop and its normalised Frobenius norm ‖A‖² = tr(AAᵀ)/p:
/// an independent route to the same numbers.
const LW_NUMPY: &str = r#"
import sys, json, numpy as np
X = np.array(json.loads(sys.argv[1]), dtype=np.float64)
n, p = X.shape
Xc = X - X.mean(axis=0)
S = Xc.T @ Xc / n
nrm2 = lambda A: np.trace(A @ A.T) / p
m = np.trace(S) / p
d2 = nrm2(S - m * np.eye(p))
b2bar = sum(nrm2(np.outer(x, x) - S) for x in Xc) / n**2
b2 = min(b2bar, d2)
shrink = b2 / d2
Sigma = shrink * m * np.eye(p) + (1 - shrink) * S
print(json.dumps({"shrinkage": shrink, "cov": Sigma.ravel().tolist()}))
"#;

fn known_matrix(n: usize, k: usize) -> Vec<f64> {
    // Correlated columns of different scales, deterministic and not low-rank.
    (0..n * k)
        .map(|i| {
            let (r, c) = ((i / k) as f64, (i % k) as f64);
            (r * 0.7 + c * 1.3).sin() * (1.0 + c * 0.25) + (r * c * 0.11).cos() * 0.5
        })
        .collect()
}

#[test]
fn ledoit_wolf_matches_a_numpy_reference() {
    // n < k (shrinkage carries a singular sample covariance) and n > k.
    for (n, k) in [(12, 20), (60, 5)] {
        let x = known_matrix(n, k);
        let rows: Vec<Vec<f64>> = x.chunks(k).map(|r| r.to_vec()).collect();
        let out = py(LW_NUMPY, &[&serde_json::to_string(&rows).unwrap()]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (_, cov, shrink) = ledoit_wolf(&Samples { data: &x, n, k });
        let want_shrink = v["shrinkage"].as_f64().unwrap();
        assert!(
            (shrink - want_shrink).abs() < 1e-10,
            "n={n} k={k}: shrinkage {shrink} vs numpy {want_shrink}"
        );
        assert!(shrink > 0.0 && shrink < 1.0, "{shrink}");
        let want: Vec<f64> = v["cov"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let scale = want.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        for (a, b) in cov.iter().zip(&want) {
            assert!((a - b).abs() < 1e-10 * scale, "n={n} k={k}: {a} vs {b}");
        }
    }
}

/// A small generated brick set, a detector fitted on it with maps, and its file; made once
/// per test process.
struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    det: Detector,
    path: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let a = assets();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("brick");
        make_data(
            &MakeDataOptions {
                texture: "brick".into(),
                seed: 1,
                out: data.clone(),
                size: 128,
                train: 40,
                test_good: 12,
                per_defect: 4,
                defects: Defect::ALL.to_vec(),
                disjoint: false,
            },
            a,
        )
        .unwrap();
        let det = fit(&FitOptions {
            backbone: a.ppocr_det(),
            layers: PPOCR_LAYERS.iter().map(|s| s.to_string()).collect(),
            normal: data.join("train/good"),
            size: None,
            prep: Prep::ppocr(),
            shrinkage: Shrinkage::LedoitWolf,
            fpr: 0.0027,
            maps: true,
            map_samples: 20_000,
            per_position: false,
            image_score: edgeslim::anomaly::ImageScore::Pooled,
            seed: 0,
            progress: false,
        })
        .unwrap();
        let path = dir.path().join("brick.onnx");
        export(&det)
            .unwrap()
            .save(&path, &SaveOptions::default())
            .unwrap();
        Fixture {
            _dir: dir,
            data,
            det,
            path,
        }
    })
}

fn test_images(f: &Fixture) -> Vec<PathBuf> {
    let mut v = edgeslim_runtime::io::source::list_images(&f.data.join("test")).unwrap();
    // A few of each kind keep the engine comparisons quick.
    v.retain(|p| p.file_stem().is_some_and(|s| s == "000" || s == "001"));
    v
}

#[test]
fn exported_scores_equal_the_host_computation() {
    let f = fixture();
    let ex = f.det.trunk.extractor().unwrap();
    let insp = Inspector::load(&f.path, 1).unwrap();
    for p in test_images(f) {
        let img = edgeslim::anomaly::fit::open_rgb(&p).unwrap();
        let feats = ex.extract(&img).unwrap();
        let host = f.det.image_score(&feats);
        let host_map = f.det.map(&feats);
        let r = insp.inspect(&img, f.det.meta.image.threshold).unwrap();
        assert!(
            (r.score - host).abs() <= 1e-4 * host.abs().max(1.0),
            "{}: graph score {} vs host {host}",
            p.display(),
            r.score
        );
        let map = r.map.expect("the detector has a map");
        assert_eq!(map.data.len(), host_map.len());
        let scale = host_map.iter().fold(0.0f32, |a, b| a.max(b.abs()));
        let worst = map
            .data
            .iter()
            .zip(&host_map)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-4 * scale,
            "{}: map differs by {worst} (scale {scale})",
            p.display()
        );
    }
}

#[test]
fn tract_and_onnx_runtime_agree_and_the_checker_passes() {
    let f = fixture();
    let check = edgeslim_e2e::python_check(&f.path, None, &[]);
    assert_eq!(check.checker, "ok", "onnx.checker: {}", check.checker);
    let insp = Inspector::load(&f.path, 1).unwrap();
    let mut ort = edgeslim::engines::ort::OrtSession::load(&f.path, 1).unwrap();
    for p in test_images(f) {
        let img = edgeslim::anomaly::fit::open_rgb(&p).unwrap();
        let r = insp.inspect(&img, 0.0).unwrap();
        let x = edgeslim_runtime::inspect::frame_tensor(&img, f.det.meta.height, f.det.meta.width);
        let x = ndarray::ArrayD::from_shape_vec(
            ndarray::IxDyn(x.shape()),
            edgeslim_runtime::input::tensor_to_f32_vec(&x).unwrap(),
        )
        .unwrap();
        let out = ort.run(&[(f.det.meta.input.clone(), x)]).unwrap();
        let score = out
            .iter()
            .find(|(n, _)| n == "score")
            .unwrap()
            .1
            .iter()
            .next()
            .copied()
            .unwrap() as f64;
        assert!(
            (score - r.score).abs() <= 1e-4 * r.score.abs().max(1.0),
            "{}: ORT {score} vs tract {}",
            p.display(),
            r.score
        );
        let map = &out.iter().find(|(n, _)| n == "anomaly_map").unwrap().1;
        let tract_map = r.map.unwrap().data;
        let scale = tract_map.iter().fold(0.0f32, |a, b| a.max(b.abs()));
        let worst = map
            .iter()
            .zip(&tract_map)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-4 * scale,
            "{}: maps differ by {worst}",
            p.display()
        );
    }
}

#[test]
fn threshold_metadata_round_trips() {
    let f = fixture();
    // The runtime's reader (tract's protobuf types) gives back exactly what was written.
    let back = DetectorMeta::read(&f.path).unwrap();
    assert_eq!(back, f.det.meta);
    // The host IR and an independent reader (onnx in Python) see the same numbers.
    let m = OnnxModel::load(&f.path).unwrap();
    let t: f64 = m
        .metadata("anomaly.image_threshold")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(t, f.det.meta.image.threshold);
    let out = py(
        "import sys, json, onnx\nm = onnx.load(sys.argv[1])\nd = {p.key: p.value for p in m.metadata_props}\nj = json.loads(d['edgeslim.anomaly'])\nprint(json.dumps([j['image']['threshold'], float(d['anomaly.pixel_threshold']), j['levels'][0]['tensor']]))",
        &[f.path.to_str().unwrap()],
    );
    let v: (f64, f64, String) = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v.0, f.det.meta.image.threshold);
    assert_eq!(v.1, f.det.meta.map.as_ref().unwrap().threshold);
    assert_eq!(v.2, PPOCR_LAYERS[0]);
    // The χ rule: the threshold is the sum of the per-level χ quantiles.
    let sum: f64 = back.levels.iter().map(|l| l.chi_quantile).sum();
    assert!((sum - back.image.threshold).abs() < 1e-12);
    assert!((back.image.normalise(back.image.threshold) - 0.5).abs() < 1e-12);
    // A model without the metadata is refused by name.
    let e = DetectorMeta::read(&assets().ppocr_cls())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a detector written by `edgeslim anomaly fit`"),
        "{e}"
    );
}

/// The stated level for the small generated set (see docs/results/anomaly.md for full sets).
const MIN_IMAGE_AUROC: f64 = 0.80;
const MIN_PIXEL_AUROC: f64 = 0.85;

#[test]
fn cli_fit_eval_and_inspect_on_a_generated_set() {
    assets();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("brick");
    let det = d.path().join("brick.onnx");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    run_ok(
        "edgeslim",
        &[
            "anomaly",
            "make-data",
            "--texture",
            "brick",
            "--seed",
            "1",
            "-o",
            &s(&data),
            "--size",
            "128",
            "--train",
            "60",
            "--test-good",
            "16",
            "--per-defect",
            "6",
        ],
    );
    assert!(data.join("ground_truth/scratch/000_mask.png").is_file());
    let r = run_ok(
        "edgeslim",
        &[
            "anomaly",
            "fit",
            "--normal",
            &s(&data.join("train/good")),
            "-o",
            &s(&det),
            "--maps",
        ],
    );
    assert!(r.stdout.contains("image threshold"), "{}", r.stdout);
    let json = d.path().join("eval.json");
    let r = run_ok(
        "edgeslim",
        &[
            "eval",
            &s(&det),
            "--task",
            "anomaly",
            "--data",
            &s(&data),
            "--json",
            &s(&json),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let (img, pix) = (
        v["image_auroc"].as_f64().unwrap(),
        v["pixel_auroc"].as_f64().unwrap(),
    );
    assert!(img >= MIN_IMAGE_AUROC, "image AUROC {img}\n{}", r.stdout);
    assert!(pix >= MIN_PIXEL_AUROC, "pixel AUROC {pix}\n{}", r.stdout);
    assert!(v["pro"].as_f64().unwrap() > 0.0);

    // The board side over the same test images, with overlays and a JSON summary.
    let out = d.path().join("inspect.json");
    let overlays = d.path().join("overlays");
    let (det_s, test_s) = (s(&det), s(&data.join("test")));
    let inspect = |extra: &[&str]| {
        let mut a = vec!["inspect", det_s.as_str(), "--source", test_s.as_str()];
        a.extend_from_slice(extra);
        run_ok("edgeslim-rt", &a)
    };
    let r = inspect(&["--json", &s(&out), "--save-overlays", &s(&overlays)]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["frames"].as_u64().unwrap(), 16 + 5 * 6, "{}", r.stdout);
    assert!(
        v["failed"].as_u64().unwrap() > 0,
        "some defects fail: {}",
        r.stdout
    );
    assert_eq!(std::fs::read_dir(&overlays).unwrap().count(), 46);

    // The same run as JSON Lines: one record per frame, then the summary, nothing else.
    let r = inspect(&["--jsonl"]);
    let records: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, frames) = records.split_last().unwrap();
    assert_eq!(frames.len(), 46);
    assert_eq!(last["summary"]["failed"], v["failed"]);
    let failed = frames.iter().filter(|f| f["verdict"] == "FAIL").count() as u64;
    assert_eq!(failed, v["failed"].as_u64().unwrap(), "{}", frames[0]);

    // --reject-pin without the gpio feature (the default build) says how to get it.
    let r = run(
        "edgeslim-rt",
        &[
            "inspect",
            &s(&det),
            "--source",
            &s(&data.join("test/good")),
            "--reject-pin",
            "gpiochip0:17",
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("gpio"), "{}", r.stderr);
}

/// GET on the live view; returns the body.
fn http_get(addr: &str, path: &str) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    out[at..].to_vec()
}

#[test]
fn inspect_serves_a_live_view() {
    let f = fixture();
    let mut child = Command::new(bin("edgeslim-rt"))
        .args(["inspect", f.path.to_str().unwrap(), "--source"])
        .arg(f.data.join("test"))
        .args([
            "--loop",
            "--interval-ms",
            "20",
            "--serve",
            "127.0.0.1:0",
            "--quiet",
            "--max-frames",
            "100000",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "inspect exited before serving"
        );
        if let Some(rest) = line.trim().strip_prefix("live view: http://") {
            break rest.trim_end_matches('/').to_string();
        }
    };
    let page = String::from_utf8(http_get(&addr, "/")).unwrap();
    assert!(
        page.contains("/stream.mjpg") && page.contains("threshold"),
        "{page}"
    );
    // A stream: the first part is a JPEG of the frame with its overlay.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(s, "GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = Vec::new();
    while !(got.windows(2).any(|w| w == [0xFF, 0xD8]) && got.windows(2).any(|w| w == [0xFF, 0xD9]))
    {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got[..200.min(got.len())]).into_owned();
    assert!(head.contains("multipart/x-mixed-replace"), "{head}");
    let state: serde_json::Value = serde_json::from_slice(&http_get(&addr, "/state.json")).unwrap();
    assert!(
        state["verdict"] == "PASS" || state["verdict"] == "FAIL",
        "{state}"
    );
    assert!(state["threshold"].as_f64().unwrap() > 0.0);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_input_gets_one_line_messages() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let good = s(&f.data.join("train/good"));
    let out = s(&d.path().join("x.onnx"));

    // An unknown layer: the closest names are offered.
    let r = run(
        "edgeslim",
        &[
            "anomaly",
            "fit",
            "--normal",
            &good,
            "-o",
            &out,
            "--backbone",
            "ppocr-det",
            "--layers",
            "p2o.Add.44x",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("'p2o.Add.44x' is not a tensor") && r.stderr.contains("p2o.Add.4"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);

    // A backbone that is neither a file nor a name says which names there are.
    let r = run(
        "edgeslim",
        &[
            "anomaly",
            "fit",
            "--backbone",
            "resnet50",
            "--normal",
            &good,
            "-o",
            &out,
        ],
    );
    assert!(
        r.stderr.contains("--backbone resnet50") && r.stderr.contains("efficientnet-lite0"),
        "{}",
        r.stderr
    );

    // Mixed sizes name both files and the way out.
    let mixed = d.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    image::RgbImage::new(64, 64)
        .save(mixed.join("a.png"))
        .unwrap();
    image::RgbImage::new(96, 64)
        .save(mixed.join("b.png"))
        .unwrap();
    let r = run(
        "edgeslim",
        &["anomaly", "fit", "--normal", &s(&mixed), "-o", &out],
    );
    assert!(
        r.stderr.contains("mixed image sizes") && r.stderr.contains("--size"),
        "{}",
        r.stderr
    );

    // Too few images for the feature dimension: shrinkage makes it work, and says so.
    let few = d.path().join("few");
    std::fs::create_dir_all(&few).unwrap();
    for i in 0..5 {
        std::fs::copy(
            f.data.join(format!("train/good/{i:03}.png")),
            few.join(format!("{i}.png")),
        )
        .unwrap();
    }
    let r = run_ok(
        "edgeslim",
        &[
            "anomaly",
            "fit",
            "--backbone",
            "ppocr-det",
            "--normal",
            &s(&few),
            "-o",
            &out,
        ],
    );
    assert!(
        r.stderr
            .contains("5 normal images for 48-dimensional features")
            && r.stderr.contains("Ledoit"),
        "{}",
        r.stderr
    );
    let r = run(
        "edgeslim",
        &[
            "anomaly",
            "fit",
            "--backbone",
            "ppocr-det",
            "--normal",
            &s(&few),
            "-o",
            &out,
            "--shrinkage",
            "none",
        ],
    );
    assert!(
        r.stderr.contains("singular")
            && r.stderr.contains("--shrinkage none: ")
            && r.stderr.contains("ledoit-wolf"),
        "{}",
        r.stderr
    );

    // Masks missing.
    let copy = d.path().join("nomask");
    for sub in ["test/good", "test/hole"] {
        std::fs::create_dir_all(copy.join(sub)).unwrap();
        for e in std::fs::read_dir(f.data.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.join(sub).join(e.file_name())).unwrap();
        }
    }
    let r = run(
        "edgeslim",
        &[
            "eval",
            &s(&f.path),
            "--task",
            "anomaly",
            "--data",
            &s(&copy),
        ],
    );
    assert!(
        r.stderr.contains("masks missing") && r.stderr.contains("--image-only"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    run_ok(
        "edgeslim",
        &[
            "eval",
            &s(&f.path),
            "--task",
            "anomaly",
            "--data",
            &s(&copy),
            "--image-only",
        ],
    );
}

#[test]
fn finetune_lowers_the_objective_and_its_trunk_feeds_fit() {
    let a = assets();
    let d = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let data = d.path().join("brick");
    make_data(
        &MakeDataOptions {
            texture: "brick".into(),
            seed: 2,
            out: data.clone(),
            size: 64,
            train: 24,
            test_good: 2,
            per_defect: 1,
            defects: vec![Defect::Hole],
            disjoint: false,
        },
        a,
    )
    .unwrap();
    let ft = d.path().join("ft.onnx");
    let curves = d.path().join("ft.json");
    let r = run_ok(
        "edgeslim",
        &[
            "anomaly",
            "finetune",
            "--normal",
            &s(&data.join("train/good")),
            "-o",
            &s(&ft),
            "--curves",
            &s(&curves),
            "--epochs",
            "2",
            "--patience",
            "5",
            "--lr",
            "1e-3",
            "--batch",
            "6",
            "--val-fraction",
            "0.25",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&curves).unwrap()).unwrap();
    let c = v["curves"].as_array().unwrap();
    assert_eq!(c.len(), 3, "{}", r.stdout);
    // The objective (mean Mahalanobis score of the normal training batches under the epoch's
    // Gaussians) goes down from the first epoch to the second.
    let loss = |i: usize| c[i]["step_loss"].as_f64().unwrap();
    assert!(c[0]["step_loss"].is_null());
    assert!(
        loss(2) < loss(1),
        "step loss {} -> {}\n{}",
        loss(1),
        loss(2),
        r.stdout
    );
    for e in c {
        let a = e["val_auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{e}");
    }
    assert!(r.stdout.contains("<- kept"), "{}", r.stdout);
    let check = edgeslim_e2e::python_check(&ft, None, &[]);
    assert_eq!(check.checker, "ok", "onnx.checker: {}", check.checker);

    // `fit` recognises the trunk: no --layers, no normalisation flags.
    let det = d.path().join("det.onnx");
    run_ok(
        "edgeslim",
        &[
            "anomaly",
            "fit",
            "--backbone",
            &s(&ft),
            "--normal",
            &s(&data.join("train/good")),
            "-o",
            &s(&det),
        ],
    );
    let meta = DetectorMeta::read(&det).unwrap();
    assert_eq!(
        meta.levels
            .iter()
            .map(|l| l.tensor.as_str())
            .collect::<Vec<_>>(),
        edgeslim::anomaly::backbones::EFFICIENTNET_LAYERS.to_vec(),
        "the default backbone's layers"
    );
    let check = edgeslim_e2e::python_check(&det, None, &[]);
    assert_eq!(check.checker, "ok", "onnx.checker: {}", check.checker);
    let insp = Inspector::load(&det, 1).unwrap();
    let mut ort = edgeslim::engines::ort::OrtSession::load(&det, 1).unwrap();
    let img = edgeslim::anomaly::fit::open_rgb(&data.join("test/hole/000.png")).unwrap();
    let tract_score = insp.inspect(&img, 0.0).unwrap().score;
    let x = edgeslim_runtime::inspect::frame_tensor(&img, meta.height, meta.width);
    let x = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(x.shape()),
        edgeslim_runtime::input::tensor_to_f32_vec(&x).unwrap(),
    )
    .unwrap();
    let out = ort.run(&[(meta.input.clone(), x)]).unwrap();
    let ort_score = out
        .iter()
        .find(|(n, _)| n == "score")
        .unwrap()
        .1
        .iter()
        .next()
        .copied()
        .unwrap() as f64;
    assert!(
        (ort_score - tract_score).abs() <= 1e-4 * tract_score.abs().max(1.0),
        "ORT {ort_score} vs tract {tract_score}"
    );

    // Bad input: too few images to hold some out.
    let few = d.path().join("few");
    std::fs::create_dir_all(&few).unwrap();
    for i in 0..5 {
        std::fs::copy(
            data.join(format!("train/good/{i:03}.png")),
            few.join(format!("{i}.png")),
        )
        .unwrap();
    }
    let r = run(
        "edgeslim",
        &["anomaly", "finetune", "--normal", &s(&few), "-o", &s(&ft)],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("fine-tuning needs at least"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

/// One Gaussian per map position with the map's maximum as the image score: the exported
/// graph (batched per-position MatMuls, ReduceMax) computes what the host computes, in tract
/// and in ONNX Runtime, and passes the checker.
#[test]
fn per_position_map_max_detector_matches_host_and_both_engines() {
    let f = fixture();
    let a = assets();
    let det = fit(&FitOptions {
        backbone: a.ppocr_det(),
        layers: PPOCR_LAYERS.iter().map(|s| s.to_string()).collect(),
        normal: f.data.join("train/good"),
        size: None,
        prep: Prep::ppocr(),
        shrinkage: Shrinkage::LedoitWolf,
        fpr: 0.0027,
        maps: true,
        map_samples: 20_000,
        per_position: true,
        image_score: edgeslim::anomaly::ImageScore::MapMax,
        seed: 0,
        progress: false,
    })
    .unwrap();
    let positions = det.levels[0].positions.as_ref().unwrap();
    let [_, gh, gw] = det.trunk.shapes[0];
    assert_eq!(positions.len(), gh * gw);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pp.onnx");
    export(&det)
        .unwrap()
        .save(&path, &SaveOptions::default())
        .unwrap();
    assert_eq!(edgeslim_e2e::python_check(&path, None, &[]).checker, "ok");
    let ex = det.trunk.extractor().unwrap();
    let insp = Inspector::load(&path, 1).unwrap();
    let mut ort = edgeslim::engines::ort::OrtSession::load(&path, 1).unwrap();
    for p in test_images(f) {
        let img = edgeslim::anomaly::fit::open_rgb(&p).unwrap();
        let feats = ex.extract(&img).unwrap();
        let host_map = det.map(&feats);
        let host = det.image_score(&feats);
        let max = host_map.iter().fold(f32::MIN, |m, v| m.max(*v)) as f64;
        assert!(
            (host - max).abs() < 1e-9,
            "the image score is the map's maximum"
        );
        let r = insp.inspect(&img, det.meta.image.threshold).unwrap();
        assert!(
            (r.score - host).abs() <= 1e-4 * host.abs().max(1.0),
            "{}: graph {} vs host {host}",
            p.display(),
            r.score
        );
        let x = edgeslim_runtime::inspect::frame_tensor(&img, det.meta.height, det.meta.width);
        let x = ndarray::ArrayD::from_shape_vec(
            ndarray::IxDyn(x.shape()),
            edgeslim_runtime::input::tensor_to_f32_vec(&x).unwrap(),
        )
        .unwrap();
        let out = ort.run(&[(det.meta.input.clone(), x)]).unwrap();
        let score = out
            .iter()
            .find(|(n, _)| n == "score")
            .unwrap()
            .1
            .iter()
            .next()
            .copied()
            .unwrap();
        assert!(
            (score as f64 - r.score).abs() <= 1e-4 * r.score.abs().max(1.0),
            "ORT {score} vs tract {}",
            r.score
        );
    }
}
