//! `edgeslim optimize` is lossless: ONNX Runtime gives the same outputs before and after,
//! onnx.checker (full) accepts the result, and the clean-up it claims really happened.

use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim_e2e::{assert_equivalent, assets, models, python_check, run_ok};
use std::path::Path;

fn optimize(input: &Path, output: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "optimize",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok("edgeslim", &args).stdout
}

fn op_count(m: &OnnxModel, op: &str) -> usize {
    m.graph().node.iter().filter(|n| n.op_type == op).count()
}

#[test]
fn messy_cnn_is_cleaned_and_equivalent() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("messy.onnx");
    models::messy_cnn()
        .save(&src, &SaveOptions::default())
        .unwrap();
    let out = dir.path().join("clean.onnx");
    let stdout = optimize(&src, &out, &[]);
    assert!(stdout.contains("BatchNormalization folded"), "{stdout}");

    let m = OnnxModel::load(&out).unwrap();
    assert_eq!(op_count(&m, "BatchNormalization"), 0, "all five BNs fold");
    assert_eq!(op_count(&m, "Identity") + op_count(&m, "Dropout"), 0);
    assert_eq!(op_count(&m, "Conv"), 2, "the dead conv is gone");
    assert!(m.initializer("unused.w").is_none() && m.initializer("dead.w").is_none());
    assert_eq!(
        m.graph().output[0].name,
        "logits",
        "graph output names are kept"
    );

    let check = python_check(&out, Some(&src), &[]);
    assert_equivalent(&check, 1e-5);
}

#[test]
fn constant_node_weights_become_initializers() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("const.onnx");
    models::constant_weights()
        .save(&src, &SaveOptions::default())
        .unwrap();
    let out = dir.path().join("init.onnx");
    optimize(&src, &out, &[]);
    let m = OnnxModel::load(&out).unwrap();
    assert_eq!(op_count(&m, "Constant"), 0);
    assert!(m.initializer("wconst").is_some() && m.initializer("bconst").is_some());
    assert!(
        m.graph().node.iter().all(|n| !n.name.is_empty()),
        "every node named"
    );
    assert_equivalent(&python_check(&out, Some(&src), &[]), 1e-6);
}

/// Run, insist on failure with exit code 1, and return stderr.
fn run_err(name: &str, args: &[&str]) -> String {
    let r = edgeslim_e2e::run(name, args);
    assert_eq!(
        r.code, 1,
        "{name} {args:?} should fail:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.stderr
}

#[test]
fn external_data_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("ext.onnx");
    models::messy_cnn()
        .save(
            &src,
            &SaveOptions {
                external_data_threshold: Some(64),
            },
        )
        .unwrap();
    let data_of = |model: &str| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().to_string();
                n.starts_with(&format!("{model}.")) && n.ends_with(".data")
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        data_of("ext.onnx").len(),
        1,
        "one data file named by its content"
    );
    let raw = std::fs::read(&src).unwrap();
    assert!(
        raw.len() < 4000,
        "weights left the model file ({} bytes)",
        raw.len()
    );

    // Reading external data: the IR and ORT see the same model as the inline one.
    let inline = dir.path().join("inline.onnx");
    OnnxModel::load(&src)
        .unwrap()
        .save(&inline, &SaveOptions::default())
        .unwrap();
    assert_equivalent(&python_check(&inline, Some(&src), &[]), 0.0);

    // optimize reads external data and writes it back out.
    let out = dir.path().join("opt.onnx");
    optimize(&src, &out, &["--external-data", "64"]);
    assert_eq!(data_of("opt.onnx").len(), 1);
    assert_equivalent(&python_check(&out, Some(&src), &[]), 1e-5);

    // Replacing a model with external data switches the pair at once: the new model names
    // a new data file, and the replaced model's data file is removed after the switch.
    optimize(&src, &out, &["--external-data", "1000000000"]);
    assert_eq!(
        data_of("opt.onnx"),
        Vec::<std::path::PathBuf>::new(),
        "old data removed"
    );
    assert_equivalent(&python_check(&out, Some(&src), &[]), 1e-5);
    optimize(&src, &out, &["--external-data", "64"]);
    assert_eq!(data_of("opt.onnx").len(), 1);

    // The input's external-data file is an input too: never overwritten, whichever output
    // (the model or its data file) would land on it.
    let data = data_of("ext.onnx").remove(0);
    let before = std::fs::read(&data).unwrap();
    let ext_out = data.clone();
    let err = run_err(
        "edgeslim",
        &[
            "optimize",
            src.to_str().unwrap(),
            "-o",
            ext_out.to_str().unwrap(),
        ],
    );
    assert!(err.contains("refusing to overwrite the input"), "{err}");
    // `-o ext.onnx` with external data would replace the input and its data beside it.
    let err = run_err(
        "edgeslim",
        &[
            "optimize",
            src.to_str().unwrap(),
            "-o",
            dir.path().join("ext.onnx").to_str().unwrap(),
            "--external-data",
            "64",
        ],
    );
    assert!(err.contains("refusing to overwrite the input"), "{err}");
    assert_eq!(
        std::fs::read(&data).unwrap(),
        before,
        "the input's data is untouched"
    );
    // Outputs never replace what is not a regular file (a device node, a folder). The device
    // is a node of our own in the temp folder: a regression must not destroy /dev/null.
    let node = dir.path().join("null-device");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; makedev(1, 3) is the null device's number.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } == 0;
    let (target_kind, expected) = if made {
        ("device", "is a device")
    } else {
        // Without the right to create device nodes, a FIFO takes the same path.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        ("FIFO", "is a FIFO")
    };
    let err = run_err(
        "edgeslim",
        &[
            "optimize",
            src.to_str().unwrap(),
            "-o",
            node.to_str().unwrap(),
        ],
    );
    assert!(err.contains(expected), "{target_kind}: {err}");
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(&node).unwrap().file_type();
    assert!(
        kind.is_char_device() || kind.is_fifo(),
        "the {target_kind} is still there"
    );
    let err = run_err(
        "edgeslim",
        &[
            "optimize",
            src.to_str().unwrap(),
            "-o",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(err.contains("is a folder"), "{err}");
}

/// Real exports: PP-OCR cls (weights in Constant nodes, 35 BNs) and PP-OCRv4 det
/// (symbolic output shapes that contradict fixed inputs), run on a real photograph.
#[test]
fn ppocr_models_round_trip_through_optimize() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    for (model, shape) in [
        (a.ppocr_cls(), [1usize, 3, 48, 192]),
        (a.ppocr_det(), [1, 3, 320, 320]),
    ] {
        let img = edgeslim_runtime::input::open_image(&a.image("page.png")).unwrap();
        let prep = edgeslim_runtime::input::ImagePrep::default();
        let t = edgeslim_runtime::input::image_to_tensor(&img, &shape, &prep).unwrap();
        let npy = dir.path().join("x.npy");
        edgeslim_runtime::input::write_npy(&npy, &t).unwrap();

        let out = dir.path().join("opt.onnx");
        let stdout = optimize(&model, &out, &[]);
        let m = OnnxModel::load(&out).unwrap();
        assert_eq!(op_count(&m, "Constant"), 0, "{stdout}");
        let shape_arg = format!("x={}", shape.map(|d| d.to_string()).join(","));
        let input_arg = format!("x={}", npy.display());
        let check = python_check(
            &out,
            Some(&model),
            &[
                "--input-shape",
                &shape_arg,
                "--input",
                &input_arg,
                "--exact",
            ],
        );
        assert_equivalent(&check, 1e-5);
        assert!(
            check.outputs[0].max_abs > 0.01,
            "a real page gives real activations: {:?}",
            check.outputs
        );
    }
}

#[test]
fn fixed_input_shape_writes_inferred_output_shapes() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("det-fixed.onnx");
    optimize(&a.ppocr_det(), &out, &["--input-shape", "x=1,3,320,320"]);
    let m = OnnxModel::load(&out).unwrap();
    let dims = edgeslim::optimize::shapes::declared(&m.graph().output[0]);
    assert_eq!(
        edgeslim_runtime::model::format_dims(&dims),
        "[1,1,320,320]",
        "DB detector output is a full-resolution probability map"
    );
    // Plain tract now loads it without any override.
    let loaded = edgeslim_runtime::LoadedModel::load(&out, &Default::default()).unwrap();
    assert_eq!(loaded.outputs[0].shape, vec![1, 1, 320, 320]);
}

/// The rewrites for tract: scale/shift folded into the convolutions (plain and depthwise)
/// and the Gemm, every hard-swish spelling made one `HardSwish` (opset moved to 14), the
/// Paddle squeeze-excite gate left alone; ONNX Runtime and tract agree with the original.
#[test]
fn exported_activations_become_tract_friendly() {
    let dir = tempfile::tempdir().unwrap();
    for opset in [11, 13] {
        let src = dir.path().join(format!("act{opset}.onnx"));
        models::exported_activations(opset, 1)
            .save(&src, &SaveOptions::default())
            .unwrap();
        let out = dir.path().join(format!("act{opset}-opt.onnx"));
        let stdout = optimize(&src, &out, &["-v"]);
        let m = OnnxModel::load(&out).unwrap();
        assert_eq!(m.opset(), 14, "{stdout}");
        assert_eq!(op_count(&m, "HardSwish"), 3, "{stdout}");
        assert_eq!(op_count(&m, "Clip") + op_count(&m, "Div"), 0, "{stdout}");
        assert_eq!(
            op_count(&m, "HardSigmoid"),
            1,
            "the SE gate stays: {stdout}"
        );
        assert_eq!(op_count(&m, "Sub") + op_count(&m, "Add"), 0, "{stdout}");
        // Left: the hard-swish Mul… none; the SE gate's Mul only.
        assert_eq!(op_count(&m, "Mul"), 1, "{stdout}");
        assert_equivalent(&python_check(&out, Some(&src), &[]), 1e-5);
        let input = [(
            "x",
            vec![1, 3, 12, 12],
            edgeslim_e2e::engines::random(432, 3),
        )];
        let (tract, ort) = edgeslim_e2e::engines::run_both(&out, &input);
        let (_, ort_src) = edgeslim_e2e::engines::run_both(&src, &input);
        assert!(edgeslim_e2e::engines::rel_diff(&tract[0], &ort[0]) < 1e-5);
        assert!(edgeslim_e2e::engines::rel_diff(&tract[0], &ort_src[0]) < 1e-5);
    }
}

/// A Softmax that does not act on the last axis changed meaning at opset 13: the model keeps
/// its opset, and hard-swish is written in the opset-6 form `Mul(HardSigmoid(x), x)`.
#[test]
fn hardswish_keeps_an_opset_that_cannot_move() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("act.onnx");
    models::exported_activations(11, 0)
        .save(&src, &SaveOptions::default())
        .unwrap();
    let out = dir.path().join("act-opt.onnx");
    let stdout = optimize(&src, &out, &["-v"]);
    assert!(stdout.contains("opset stays 11"), "{stdout}");
    let m = OnnxModel::load(&out).unwrap();
    assert_eq!(m.opset(), 11);
    assert_eq!(op_count(&m, "HardSwish"), 0);
    assert_eq!(
        op_count(&m, "HardSigmoid"),
        4,
        "two rewritten, the HardSigmoid form and the SE gate kept: {stdout}"
    );
    assert_eq!(op_count(&m, "Clip"), 0, "{stdout}");
    assert_equivalent(&python_check(&out, Some(&src), &[]), 1e-5);
}
