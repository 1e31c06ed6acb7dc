//! PatchGD (issue 23): the UltraMNIST-style data set written from the real MNIST digits.

use edgeslim::data::ultramnist::{read_labels, CLASSES};
use edgeslim_e2e::{assets, run, run_ok};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn ultramnist_is_written_from_real_digits_reproducibly_and_never_over_a_folder() {
    assets();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, seed: &str| {
        let dir = tmp.path().join(name);
        let args = [
            "data",
            "ultramnist",
            "--size",
            "256",
            "--n",
            "10",
            "--seed",
            seed,
            "-o",
            s(&dir),
        ];
        (dir.clone(), run("edgeslim", &args))
    };
    let (a, r) = write("a", "3");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let entries = read_labels(&a).unwrap();
    assert_eq!(entries.len(), 10);
    assert_eq!(entries.iter().filter(|e| e.split == "train").count(), 8);
    for e in &entries {
        assert!((3..=5).contains(&e.digits.len()) && e.label < CLASSES);
        let img = image::open(a.join(&e.file)).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (256, 256));
        // Real digits are drawn: some pixels are white, most of the canvas is black.
        let lit = img.pixels().filter(|p| p.0[0] > 128).count();
        assert!(lit > 50 && lit < 256 * 256 / 4, "{lit}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["size"], 256);
    // The same seed gives the same bytes; another seed other images.
    let (b, _) = write("b", "3");
    let (c, _) = write("c", "4");
    let bytes = |d: &Path| std::fs::read(d.join("train/00000.png")).unwrap();
    assert_eq!(bytes(&a), bytes(&b));
    assert_ne!(bytes(&a), bytes(&c));
    // An existing data set is never written over.
    let (_, again) = write("a", "5");
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("never written over"),
        "{}",
        again.stderr
    );
    assert_eq!(bytes(&a), bytes(&b));
    let bad = run_ok("edgeslim", &["data", "ultramnist", "--help"]);
    assert!(bad.stdout.contains("digit"));
}

/// `train-patch` (issue 23, item 2): under a memory cap that plain gradient descent on the
/// whole image passes, PatchGD trains and writes its two graphs (checked by onnx.checker and
/// run by tract and ONNX Runtime alike) and a card that re-reads; plain gradient descent is
/// stopped by the cap with a clear error and writes nothing.
#[test]
fn train_patch_keeps_under_a_memory_cap_that_plain_gradient_descent_breaks() {
    use edgeslim_e2e::engines::{random, rel_diff, run_both};
    use edgeslim_e2e::python_check;
    assets();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("um");
    run_ok(
        "edgeslim",
        &[
            "data",
            "ultramnist",
            "--size",
            "256",
            "--n",
            "12",
            "--seed",
            "1",
            "-o",
            s(&data),
        ],
    );
    let train = |method: &str, out: &Path| {
        run(
            "edgeslim",
            &[
                "train-patch",
                "--data",
                s(&data),
                "--method",
                method,
                "--image-size",
                "256",
                "--patch",
                "32",
                "--widths",
                "8,16",
                "--head-width",
                "16",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--threads",
                "1",
                // PatchGD peaks near 130 MiB here, plain GD near 330 MiB.
                "--memory-cap",
                "220MiB",
                "-o",
                s(out),
            ],
        )
    };
    let pgd = tmp.path().join("pgd");
    let r = train("patchgd", &pgd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pgd.join("card.json")).unwrap()).unwrap();
    assert_eq!(card["grid"]["patch"], 32);
    assert_eq!(card["sampled"], 16, "a quarter of the 8×8 patches");
    assert_eq!(card["epochs"].as_array().unwrap().len(), 1);
    assert!(card["peak_rss_bytes"].as_u64().unwrap() < 220 << 20);
    let d = card["dim"].as_u64().unwrap() as usize;
    assert_eq!(d, 16);
    for (file, input, dims) in [
        ("backbone.onnx", "patch", vec![3usize, 1, 32, 32]),
        ("head.onnx", "z", vec![2, d, 8, 8]),
    ] {
        let path = pgd.join(file);
        let n: usize = dims.iter().product();
        let (t, o) = run_both(&path, &[(input, dims.clone(), random(n, 4))]);
        assert!(
            rel_diff(&t[0], &o[0]) <= 1e-4,
            "{file}: {}",
            rel_diff(&t[0], &o[0])
        );
        let shape = format!(
            "{input}={}",
            dims.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            python_check(&path, None, &["--input-shape", &shape]).checker,
            "ok"
        );
    }
    let gd = tmp.path().join("gd");
    let r = train("gd", &gd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("memory cap exceeded"), "{}", r.stderr);
    assert!(!gd.exists());
}

/// `edgeslim-rt patch` (issue 23, item 3): the board's strip-by-strip inference gives the
/// logits the training engine gives on the same image (Z filled on the host, one head pass),
/// with threads or without; the contribution map averages to the logit (minus nothing: the
/// head's classifier is a 1×1 convolution before the average pool); a truncated PNG and a
/// header claiming a 100000-pixel side are refused with the file named, nothing allocated.
#[test]
fn the_board_patch_inference_equals_the_host_and_refuses_bad_images() {
    use edgeslim::patchgd::data::UltraSet;
    assets();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("um");
    run_ok(
        "edgeslim",
        &[
            "data",
            "ultramnist",
            "--size",
            "256",
            "--n",
            "6",
            "--seed",
            "2",
            "-o",
            s(&data),
        ],
    );
    let model = tmp.path().join("m");
    run_ok(
        "edgeslim",
        &[
            "train-patch",
            "--data",
            s(&data),
            "--image-size",
            "256",
            "--patch",
            "32",
            "--widths",
            "8,16",
            "--head-width",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--threads",
            "1",
            "-o",
            s(&model),
        ],
    );
    let set = UltraSet::open(&data, 256).unwrap();
    let image = data.join(&set.test[0].file);
    for threads in ["1", "3"] {
        let rt = ["--threads", threads, "--group", "3"];
        let (want, got, res) = host_and_board(&model, &set, 32, &rt);
        assert_eq!(res["grid"], serde_json::json!([8, 8]));
        let diff = max_abs_diff(&want, &got);
        let scale = want.iter().map(|v| v.abs()).fold(1e-3f32, f32::max);
        assert!(diff <= 1e-4 * scale.max(1.0), "threads {threads}: {diff}");
        let class = res["class"].as_u64().unwrap() as usize;
        let map_sum: f64 = res["contribution"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!(
            (map_sum - got[class] as f64).abs() < 1e-4,
            "{map_sum} vs {}",
            got[class]
        );
    }
    // A canvas twice the training size: the same graphs on a 16 × 16 grid, and the host's
    // engine agrees there too.
    let big = tmp.path().join("big");
    run_ok(
        "edgeslim",
        &[
            "data",
            "ultramnist",
            "--size",
            "512",
            "--n",
            "2",
            "--seed",
            "3",
            "-o",
            s(&big),
        ],
    );
    let (want_big, got_big, res) =
        host_and_board(&model, &UltraSet::open(&big, 512).unwrap(), 32, &[]);
    assert_eq!(res["grid"], serde_json::json!([16, 16]));
    let diff = max_abs_diff(&want_big, &got_big);
    assert!(
        diff <= 1e-4 * want_big.iter().map(|v| v.abs()).fold(1.0f32, f32::max),
        "{diff}"
    );

    // A truncated PNG: a clear error naming the file.
    let bytes = std::fs::read(&image).unwrap();
    let cut = tmp.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = run(
        "edgeslim-rt",
        &["patch", "--model", s(&model), "--input", s(&cut)],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cut.png"), "{}", r.stderr);
    // A header claiming 100000 × 100000 pixels (no pixel data): refused before any decoding.
    let huge = tmp.path().join("huge.png");
    {
        let f = std::fs::File::create(&huge).unwrap();
        let mut enc = png::Encoder::new(f, 100_000, 100_000);
        enc.set_color(png::ColorType::Grayscale);
        let mut w = enc.write_header().unwrap();
        // An empty deflate stream: the decoder finds its first IDAT and reports the size.
        w.write_chunk(
            png::chunk::IDAT,
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        )
        .unwrap();
        let _ = w.finish();
    }
    let r = run(
        "edgeslim-rt",
        &["patch", "--model", s(&model), "--input", s(&huge)],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("huge.png") && r.stderr.contains("100000"),
        "{}",
        r.stderr
    );
}

/// The logits of the PatchGD model in `model` on the first test image of `set` from the host's
/// training engine (Z filled patch group by patch group, one head pass) and from the board's
/// `edgeslim-rt patch` with `rt_args`: (host, board, the board's JSON result).
fn host_and_board(
    model: &Path,
    set: &edgeslim::patchgd::data::UltraSet,
    patch: usize,
    rt_args: &[&str],
) -> (Vec<f32>, Vec<f32>, serde_json::Value) {
    use edgeslim::onnx::OnnxModel;
    use edgeslim::patchgd::{Grid, PatchGd};
    let entry = &set.test[0];
    let (x, _) = set.batch(&[entry]).unwrap();
    let host = PatchGd::new(
        &OnnxModel::load(&model.join("backbone.onnx")).unwrap(),
        &OnnxModel::load(&model.join("head.onnx")).unwrap(),
        Grid::new(1, set.side, patch).unwrap(),
        &Default::default(),
    )
    .unwrap();
    let want: Vec<f32> = host
        .logits(&host.fill_z(&x, 1).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let image = set.dir.join(&entry.file);
    let mut args = vec!["patch", "--model", s(model), "--input", s(&image), "--json"];
    args.extend_from_slice(rt_args);
    let r = run_ok("edgeslim-rt", &args);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let res = j["images"][0]["result"].clone();
    let got = res["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    (want, got, res)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// `--backbone mobilenetv2` (issue 23, item 2, the paper's backbone): the pretrained ImageNet
/// MobileNetV2, built for 32-pixel patches with its batch norms folded and a linear layer to
/// d, trains under PatchGD; its backbone graph holds MobileNetV2's weights (2.2 M), passes
/// onnx.checker and agrees across tract and ONNX Runtime; the board's patch inference equals
/// the host's on it.
#[test]
fn a_pretrained_mobilenetv2_patch_backbone_trains_and_runs_on_the_board() {
    use edgeslim::onnx::OnnxModel;
    use edgeslim::patchgd::data::UltraSet;
    use edgeslim_e2e::engines::{random, rel_diff, run_both};
    use edgeslim_e2e::python_check;
    assets();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("um");
    run_ok(
        "edgeslim",
        &[
            "data",
            "ultramnist",
            "--size",
            "128",
            "--n",
            "5",
            "--seed",
            "4",
            "-o",
            s(&data),
        ],
    );
    let model = tmp.path().join("mnv2");
    let r = run_ok(
        "edgeslim",
        &[
            "train-patch",
            "--data",
            s(&data),
            "--backbone",
            "mobilenetv2",
            "--feature-dim",
            "16",
            "--head-width",
            "16",
            "--image-size",
            "128",
            "--patch",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--threads",
            "1",
            "-o",
            s(&model),
        ],
    );
    assert!(r.stdout.contains("d = 16"), "{}", r.stdout);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("card.json")).unwrap()).unwrap();
    assert_eq!(card["options"]["backbone"], "mobilenetv2");
    assert_eq!(card["dim"], 16);
    let params = card["backbone_params"].as_u64().unwrap();
    // MobileNetV2's features (2.22 M with the batch norms folded) and 1280 × 16 + 16.
    assert!((2_200_000..2_300_000).contains(&params), "{params}");
    let path = model.join("backbone.onnx");
    let backbone = OnnxModel::load(&path).unwrap();
    assert!(backbone.graph().node.len() > 50);
    let dims = vec![2usize, 1, 32, 32];
    let (t, o) = run_both(&path, &[("patch", dims.clone(), random(2 * 32 * 32, 5))]);
    assert!(rel_diff(&t[0], &o[0]) <= 1e-4, "{}", rel_diff(&t[0], &o[0]));
    assert_eq!(
        python_check(&path, None, &["--input-shape", "patch=2,1,32,32"]).checker,
        "ok"
    );
    let (want, got, res) = host_and_board(&model, &UltraSet::open(&data, 128).unwrap(), 32, &[]);
    assert_eq!(res["grid"], serde_json::json!([4, 4]));
    let diff = max_abs_diff(&want, &got);
    assert!(
        diff <= 1e-4 * want.iter().map(|v| v.abs()).fold(1.0f32, f32::max),
        "{diff}"
    );
}
