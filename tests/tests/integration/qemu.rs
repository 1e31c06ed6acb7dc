//! The board runtime built for aarch64 (profile rpi4) and armv7 (rpi3-armv7), run under
//! qemu-user: its outputs equal the x86 runtime's within 1e-4 on the real PP-OCR models fed
//! real photographs and on models built here, and its bench JSON names the board's
//! architecture and profile and says it was emulated. The trained zoo (models/*.onnx) joins
//! the comparison as soon as it exists. qemu timings are meaningless: nothing here reads them
//! as board speed.

use edgeslim::onnx::model::SaveOptions;
use edgeslim_e2e::boards::{cross_runtime, kernel_mix, CrossRuntime};
use edgeslim_e2e::{assets, models, run_ok, workspace};
use edgeslim_runtime::input::{read_npy, tensor_to_f32_vec, write_npy, SplitMix64};
use edgeslim_runtime::report::BenchReport;
use edgeslim_runtime::tract_onnx::prelude::Tensor;
use std::path::{Path, PathBuf};

/// Largest difference allowed between an ARM and the x86 output (absolute).
const TOLERANCE: f64 = 1e-4;

enum Input {
    /// A photograph with PP-OCR's preprocessing (BGR, (x/255 − 0.5)/0.5), decoded and resized
    /// by the runtime on each side: the image path is part of what is compared.
    Photo(PathBuf),
    /// A tensor in a .npy file.
    Npy(PathBuf),
}

struct Case {
    name: String,
    model: PathBuf,
    shape: Option<String>,
    input: Input,
}

/// Deterministic values in [-1, 1) for a tensor of `dims`.
fn npy_input(dir: &Path, name: &str, dims: &[usize], seed: u64) -> PathBuf {
    let mut rng = SplitMix64(seed);
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    let t = Tensor::from_shape(dims, &data).expect("volume matches");
    let path = dir.join(format!("{name}.in.npy"));
    write_npy(&path, &t).expect("writing the input");
    path
}

fn cases(dir: &Path) -> Vec<Case> {
    let a = assets();
    let save = |name: &str, m: edgeslim::onnx::OnnxModel| {
        let p = dir.join(format!("{name}.onnx"));
        m.save(&p, &SaveOptions::default())
            .expect("saving a test model");
        p
    };
    let mut cases = vec![
        Case {
            name: "ppocr_cls".into(),
            model: a.ppocr_cls(),
            shape: Some("x=1,3,48,192".into()),
            input: Input::Photo(a.image("astronaut.png")),
        },
        Case {
            name: "ppocr_det".into(),
            model: a.ppocr_det(),
            shape: Some("x=1,3,96,96".into()),
            input: Input::Photo(a.image("coffee.png")),
        },
        Case {
            name: "messy_cnn".into(),
            model: save("messy_cnn", models::messy_cnn()),
            shape: None,
            input: Input::Npy(npy_input(dir, "messy_cnn", &[1, 3, 16, 16], 11)),
        },
        Case {
            name: "constant_weights".into(),
            model: save("constant_weights", models::constant_weights()),
            shape: None,
            input: Input::Npy(npy_input(dir, "constant_weights", &[2, 6], 12)),
        },
        Case {
            name: "kernel_mix".into(),
            model: save("kernel_mix", kernel_mix()),
            shape: None,
            input: Input::Npy(npy_input(dir, "kernel_mix", &[1, 6, 19, 23], 13)),
        },
    ];
    cases.extend(zoo_cases(dir));
    cases
}

/// Every trained model in models/*.onnx (the zoo), fed seeded values at its declared shape,
/// with dynamic dimensions at 1. `edgeslim-rt run` feeds one float input, so a model with
/// several inputs is left to the other tests, and said so.
fn zoo_cases(dir: &Path) -> Vec<Case> {
    use edgeslim::onnx::OnnxModel;
    use onnx_protobuf::type_proto::Value;
    const FLOAT: i32 = 1;
    let Ok(entries) = std::fs::read_dir(workspace().join("models")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for (i, path) in paths.into_iter().enumerate() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let model = OnnxModel::load(&path).unwrap_or_else(|e| panic!("zoo model: {e}"));
        let inputs = model.true_inputs();
        let tensor = match inputs.as_slice() {
            [one] => match one.type_.as_ref().and_then(|t| t.value.as_ref()) {
                Some(Value::TensorType(tt)) if tt.elem_type == FLOAT => {
                    tt.shape.as_ref().map(|s| {
                        let dynamic = s.dim.iter().any(|d| d.dim_value() <= 0);
                        let dims: Vec<usize> = s
                            .dim
                            .iter()
                            .map(|d| d.dim_value().max(1) as usize)
                            .collect();
                        (one.name.clone(), dims, dynamic)
                    })
                }
                _ => None,
            },
            _ => None,
        };
        let Some((input, dims, dynamic)) = tensor else {
            eprintln!(
                "zoo model {stem}: not compared here ({} inputs; `run` feeds one float input)",
                inputs.len()
            );
            continue;
        };
        let text: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        cases.push(Case {
            input: Input::Npy(npy_input(
                dir,
                &format!("zoo_{stem}"),
                &dims,
                100 + i as u64,
            )),
            shape: dynamic.then(|| format!("{input}={}", text.join(","))),
            name: format!("zoo_{stem}"),
            model: path,
        });
    }
    cases
}

/// `run` arguments for a case, writing outputs (and the preprocessed input) under `prefix`.
fn run_args(case: &Case, prefix: &Path) -> Vec<String> {
    let mut args = vec!["run".to_string(), case.model.display().to_string()];
    if let Some(s) = &case.shape {
        args.extend(["--input-shape".into(), s.clone()]);
    }
    match &case.input {
        Input::Photo(p) => args.extend([
            "--input".into(),
            p.display().to_string(),
            "--mean".into(),
            "0.5".into(),
            "--std".into(),
            "0.5".into(),
            "--bgr".into(),
            "--save-input".into(),
            file(prefix, "input.npy").display().to_string(),
        ]),
        Input::Npy(p) => args.extend(["--input".into(), p.display().to_string()]),
    }
    args.extend([
        "--output".into(),
        file(prefix, "out.npy").display().to_string(),
    ]);
    args
}

/// The outputs `run` wrote for `prefix`: `<prefix>.out.npy`, or `<prefix>.out.N.npy` when the
/// model has several.
fn output_files(prefix: &Path) -> Vec<PathBuf> {
    let one = file(prefix, "out.npy");
    if one.is_file() {
        return vec![one];
    }
    (0..)
        .map(|i| file(prefix, &format!("out.{i}.npy")))
        .take_while(|p| p.is_file())
        .collect()
}

/// `<prefix>.<suffix>`: the files `run_args` asks the runtime to write.
fn file(prefix: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}.{suffix}", prefix.display()))
}

fn values(path: &Path) -> Vec<f32> {
    tensor_to_f32_vec(&read_npy(path).expect("reading an output")).expect("numeric output")
}

/// Max |a − b| and max |a|, after checking shapes and finiteness.
fn diff(x86: &Path, arm: &Path) -> (f64, f64) {
    let (ta, tb) = (read_npy(x86).unwrap(), read_npy(arm).unwrap());
    assert_eq!(
        ta.shape(),
        tb.shape(),
        "{} vs {}",
        x86.display(),
        arm.display()
    );
    let (a, b) = (values(x86), values(arm));
    assert!(
        a.iter().chain(&b).all(|v| v.is_finite()),
        "non-finite output"
    );
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    let scale = a.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
    (d, scale)
}

fn outputs_match(target: &str) {
    let Some(rt) = cross_runtime(target) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for case in cases(dir.path()) {
        let x86 = dir.path().join(format!("{}.x86", case.name));
        let arm = dir.path().join(format!("{}.{target}", case.name));
        let x86_args = run_args(&case, &x86);
        run_ok(
            "edgeslim-rt",
            &x86_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let out = rt
            .command()
            .args(run_args(&case, &arm))
            .output()
            .expect("running the ARM runtime under qemu");
        assert!(
            out.status.success(),
            "{target} {}: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        if matches!(case.input, Input::Photo(_)) {
            // The same photograph decoded and resized on both sides gives the same tensor.
            let (d, _) = diff(&file(&x86, "input.npy"), &file(&arm, "input.npy"));
            assert!(
                d <= 1e-6,
                "{target} {}: preprocessed inputs differ by {d}",
                case.name
            );
        }
        let (x86_out, arm_out) = (output_files(&x86), output_files(&arm));
        assert!(!x86_out.is_empty(), "{}: no output written", case.name);
        assert_eq!(
            x86_out.len(),
            arm_out.len(),
            "{target} {}: output count",
            case.name
        );
        let mut any_nonzero = false;
        for (xo, ao) in x86_out.iter().zip(&arm_out) {
            let (d, scale) = diff(xo, ao);
            eprintln!(
                "{target} {:<24} max |arm − x86| = {d:.3e} (output scale {scale:.3e})",
                ao.file_name().unwrap().to_string_lossy()
            );
            any_nonzero |= scale > 0.0;
            assert!(
                d <= TOLERANCE,
                "{target} {}: outputs differ by {d} > {TOLERANCE}",
                case.name
            );
        }
        assert!(any_nonzero, "{}: all-zero outputs prove nothing", case.name);
    }
}

#[test]
fn aarch64_outputs_equal_x86() {
    outputs_match("rpi4");
}

#[test]
fn armv7_outputs_equal_x86() {
    outputs_match("rpi3-armv7");
}

fn bench_args(model: &Path, target: &str, json: &Path) -> Vec<String> {
    [
        "bench",
        &model.display().to_string(),
        "--input-shape",
        "x=1,3,48,192",
        "--warmup",
        "1",
        "--runs",
        "3",
        "--target",
        target,
        "--json",
        &json.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn bench_json_names_the_board(target: &str) {
    let Some(rt): Option<CrossRuntime> = cross_runtime(target) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = assets().ppocr_cls();
    let host_json = dir.path().join("host.json");
    let arm_json = dir.path().join(format!("{target}.json"));
    let args = bench_args(&model, "x86_64", &host_json);
    run_ok(
        "edgeslim-rt",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let out = rt
        .command()
        .args(bench_args(&model, target, &arm_json))
        .output()
        .expect("running the ARM runtime under qemu");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("running under emulation"), "{stdout}");

    let host = BenchReport::read(&host_json).unwrap();
    let arm = BenchReport::read(&arm_json).unwrap();
    assert_eq!(arm.device.arch, rt.profile.rust_arch());
    assert!(
        arm.device.emulated,
        "an ARM build under qemu must say it is emulated"
    );
    assert!(!host.device.emulated, "the x86 run is native");
    assert_eq!(arm.target_profile.as_deref(), Some(target));
    assert_eq!(arm.latency.runs, 3);
    assert_eq!(arm.model.sha256, host.model.sha256);
    assert_eq!(arm.model.total_macs, host.model.total_macs);
    let shapes = |r: &BenchReport| {
        r.outputs
            .iter()
            .map(|o| o.shape.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(shapes(&arm), shapes(&host));
    let p = arm.profile.as_ref().expect("a per-node profile");
    eprintln!(
        "{target} under qemu: arch {} emulated {} cpu {:?} cores {} p50 {:.3} ms (x86 {:.3} ms) \
         achieved {:.3} GFLOP/s, {} plan nodes",
        arm.device.arch,
        arm.device.emulated,
        arm.device.cpu_model,
        arm.device.cores,
        arm.latency.p50_ms,
        host.latency.p50_ms,
        p.achieved_gflops,
        arm.model.plan_nodes
    );

    // The HTML report warns before any number and gives no share of the board's peak.
    let html = dir.path().join("report.html");
    run_ok(
        "edgeslim",
        &[
            "report",
            host_json.to_str().unwrap(),
            arm_json.to_str().unwrap(),
            "-o",
            html.to_str().unwrap(),
        ],
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("EMULATED — timings meaningless"));
    assert!(
        page.contains("emulated: no share of a board&#39;s peak"),
        "peak cell"
    );
}

#[test]
fn aarch64_bench_json_names_the_board_and_emulation() {
    bench_json_names_the_board("rpi4");
}

#[test]
fn armv7_bench_json_names_the_board_and_emulation() {
    bench_json_names_the_board("rpi3-armv7");
}
