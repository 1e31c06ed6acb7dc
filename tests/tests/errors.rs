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
        model.save(&p, &SaveOptions::default()).unwrap();
        let r = run(
            "edgeslim-rt",
            &["bench", s(&p), "--runs", "1", "--warmup", "0"],
        );
        assert_clean_error(&r, &format!("{name}.onnx"));
    }
}
