//! `edgeslim data tracking`: write generated tracking sequences (OTB layout) to disk, so
//! trackers are evaluated on files (`edgeslim-rt track --eval DIR`, `edgeslim eval --task track`).
//! `edgeslim data ultramnist`: UltraMNIST-style large images from the real MNIST digits.
//! `edgeslim data fewshot`: the class pool and fixed test episodes of few-shot learning.

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use edgeslim::data::tracking::{write_otb_sequence_with, Photos, SequenceConfig};
use std::path::PathBuf;

/// Generate data sets from the packaged real photographs.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// OTB-layout tracking sequences: NAME/img/0001.jpg…, groundtruth_rect.txt, absence.label,
    /// meta.json. Sequence k uses seed SEED·1000 + k.
    #[command(
        after_help = "Example:\n  edgeslim data tracking -o data/track-bench --sequences 8 --frames 120 --seed 7"
    )]
    Tracking(TrackingArgs),
    /// UltraMNIST-style images (the PatchGD benchmark): 3–5 real MNIST digits at very
    /// different scales on a large black canvas with distractor strokes, label = their sum
    /// (28 classes). DIR/train/*.png, DIR/test/*.png (80/20; test images use only MNIST's
    /// held-out digits), DIR/labels.csv, DIR/meta.json. Never written over.
    #[command(
        after_help = "Example:\n  edgeslim data ultramnist --size 512 --n 2000 --seed 0 -o data/ultramnist-512"
    )]
    Ultramnist(UltraArgs),
    /// Few-shot classes (meta-learning, MetaDOCK): MNIST digits and Animal-MNIST silhouettes,
    /// rotations as new classes, split by base class into disjoint meta-train (36 classes),
    /// meta-val (12) and meta-test (12) sets (digits and animals 6, 9 test; 7, 8 val; the rest
    /// train). DIR/<set>/<class>/NNNN.png, DIR/pool.json, and the fixed meta-test episodes
    /// DIR/episodes-meta-test-<W>w<K>s<Q>q.json (file paths, way j = label j). Never written
    /// over.
    #[command(
        after_help = "Example:\n  edgeslim data fewshot --ways 5 --shots 1 --queries 15 --tasks 600 -o data/fewshot"
    )]
    Fewshot(FewshotArgs),
}

#[derive(ClapArgs)]
struct FewshotArgs {
    /// Folder to create (must not exist, or be empty).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Sources of base classes.
    #[arg(long, value_delimiter = ',', default_values_t = ["animal-mnist".to_string(), "mnist".to_string()])]
    source: Vec<String>,
    #[arg(long, default_value_t = 5)]
    ways: usize,
    #[arg(long, default_value_t = 1)]
    shots: usize,
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Meta-test episodes listed in the episodes file.
    #[arg(long, default_value_t = 600)]
    tasks: usize,
    /// Images per class (the first of each base class in file order).
    #[arg(long, default_value_t = 100)]
    per_class: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(ClapArgs)]
struct UltraArgs {
    /// Folder to create (must not exist, or be empty).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Canvas side in pixels (512, 1024, 2048, …).
    #[arg(long, default_value_t = 512)]
    size: u32,
    /// Images in all (the first 80 % train, the rest test).
    #[arg(long, default_value_t = 2000)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(ClapArgs)]
struct TrackingArgs {
    /// Folder to write the sequences into (created; existing sequences of the same name are
    /// replaced atomically).
    #[arg(short, long, value_name = "DIR", required_unless_present = "out")]
    output: Option<PathBuf>,
    /// Deprecated spelling of -o/--output.
    #[arg(long, value_name = "DIR", hide = true, conflicts_with = "output")]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    sequences: usize,
    #[arg(long, default_value_t = 120)]
    frames: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 320)]
    width: u32,
    #[arg(long, default_value_t = 240)]
    height: u32,
    /// Smooth motion only (no scale change, rotation, blur, light change, occlusion,
    /// distractor, exit or camera pan).
    #[arg(long)]
    plain: bool,
}

pub fn run(a: Args) -> Result<()> {
    match a.what {
        What::Tracking(t) => tracking(t),
        What::Ultramnist(u) => ultramnist(u),
        What::Fewshot(f) => fewshot(f),
    }
}

fn fewshot(a: FewshotArgs) -> Result<()> {
    use edgeslim::data::fewshot::{episode, EpisodeSpec, Pool, Source, SourceImages, Split};
    let sources = a
        .source
        .iter()
        .map(|s| s.parse::<Source>())
        .collect::<edgeslim::Result<Vec<_>>>()?;
    edgeslim::data::ensure_new_folder(&a.output)?;
    let spec = EpisodeSpec {
        ways: a.ways,
        shots: a.shots,
        queries: a.queries,
    };
    let assets = edgeslim::assets::Assets::open();
    assets.ensure()?;
    let mnist = edgeslim::data::mnist::parse(&assets.mnist_csv())?;
    let animals = edgeslim::data::animal_mnist::read(
        &assets.file(edgeslim::assets::ANIMAL_MNIST_DATA),
        &assets.file(edgeslim::assets::ANIMAL_MNIST_LABELS),
    )?;
    let images: Vec<SourceImages> = sources
        .iter()
        .map(|&s| match s {
            Source::Mnist => SourceImages::mnist(&mnist),
            Source::AnimalMnist => SourceImages {
                source: s,
                pixels: &animals.0,
                labels: &animals.1,
            },
        })
        .collect();
    let pool = Pool::build(&images, a.per_class)?;
    let split = Split::MetaTest;
    // Every episode is drawn before anything is written: a bad shape fails with nothing on disk.
    let tasks = (0..a.tasks as u64)
        .map(|i| episode(&pool, split, spec, a.seed, i))
        .collect::<edgeslim::Result<Vec<_>>>()?;
    let listed: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            let files = |items: &[(usize, usize)]| -> Vec<serde_json::Value> {
                items
                    .iter()
                    .map(|&(way, i)| serde_json::json!([way, pool.file(t.classes[way], i)]))
                    .collect()
            };
            serde_json::json!({
                "classes": t.classes.iter().map(|&c| &pool.classes[c].name).collect::<Vec<_>>(),
                "support": files(&t.support),
                "query": files(&t.query),
            })
        })
        .collect();
    let name = format!(
        "episodes-{}-{}w{}s{}q.json",
        split.name(),
        a.ways,
        a.shots,
        a.queries
    );
    let doc = serde_json::json!({
        "split": split.name(),
        "ways": a.ways,
        "shots": a.shots,
        "queries": a.queries,
        "seed": a.seed,
        "episodes": listed,
    });
    edgeslim::data::write_new_folder(&a.output, |dir| {
        pool.write_files(dir)?;
        let path = dir.join(&name);
        let bytes = serde_json::to_vec(&doc).map_err(|e| edgeslim::Error::Other(e.to_string()))?;
        std::fs::write(&path, bytes).map_err(|e| edgeslim::Error::io(&path, e))
    })?;
    let count = |s: Split| pool.classes_of(s).len();
    println!(
        "wrote {} classes ({} meta-train, {} meta-val, {} meta-test) of {} images and {} {}-way {}-shot meta-test episodes ({} queries a class) to {}",
        pool.classes.len(),
        count(Split::MetaTrain),
        count(Split::MetaVal),
        count(Split::MetaTest),
        a.per_class,
        a.tasks,
        a.ways,
        a.shots,
        a.queries,
        a.output.join(&name).display()
    );
    Ok(())
}

fn ultramnist(a: UltraArgs) -> Result<()> {
    use edgeslim::data::ultramnist::{write, UltraConfig};
    let cfg = UltraConfig {
        size: a.size,
        n: a.n,
        seed: a.seed,
    };
    cfg.check()?;
    edgeslim::data::ensure_new_folder(&a.output)?;
    let assets = edgeslim::assets::Assets::open();
    assets.ensure()?;
    let mnist = edgeslim::data::mnist::parse(&assets.mnist_csv())?;
    edgeslim::train::interrupt::install();
    let bar = if edgeslim_runtime::process::quiet() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(a.n as u64)
    };
    let w = write(&mnist, &cfg, &a.output, |_| {
        bar.inc(1);
        !edgeslim::train::interrupt::requested()
    });
    bar.finish_and_clear();
    let w = match w {
        Ok(w) => w,
        Err(e) if edgeslim::train::interrupt::requested() => {
            eprintln!("edgeslim: interrupted ({e})");
            std::process::exit(130);
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "wrote {} images of {}×{} (train {}, test {}; digit sides {}–{} px) to {}",
        a.n,
        a.size,
        a.size,
        w.train,
        w.test,
        w.digit_sides.0,
        w.digit_sides.1,
        a.output.display()
    );
    Ok(())
}

fn tracking(a: TrackingArgs) -> Result<()> {
    if a.sequences == 0 {
        anyhow::bail!("--sequences must be at least 1");
    }
    let out = edgeslim_runtime::process::current_or_deprecated(
        &a.output,
        &a.out,
        "--out DIR",
        "-o/--output DIR",
    )
    .context("no output folder given")?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let photos = Photos::open(&edgeslim::assets::Assets::open())?;
    let cfg = if a.plain {
        SequenceConfig::plain(a.width, a.height, a.frames)
    } else {
        SequenceConfig::new(a.width, a.height, a.frames)
    };
    let bar = indicatif::ProgressBar::new(a.sequences as u64);
    for k in 0..a.sequences {
        let name = format!("seq-{:03}", k);
        let seed = a.seed.wrapping_mul(1000).wrapping_add(k as u64);
        let info = write_otb_sequence_with(&photos, &out, &name, seed, &cfg)?;
        bar.println(format!(
            "{name}: {} frames, target {} over {}, {}",
            info.n_frames,
            info.target,
            info.background,
            info.attributes.join(" ")
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("wrote {} sequences to {}", a.sequences, out.display());
    Ok(())
}
