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
