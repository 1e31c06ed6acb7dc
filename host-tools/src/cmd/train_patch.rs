//! `edgeslim train-patch --data DIR --image-size N --patch P -o OUT/`: PatchGD on very large
//! images (or plain gradient descent, the baseline) with the memory cap checked as it trains.

use anyhow::{bail, Context, Result};
use edgeslim::onnx::SaveOptions;
use edgeslim::patchgd::run::{train, Method, TrainPatchOptions};
use std::path::PathBuf;

/// Train the patch backbone (patch → d-vector) and the head over the latent map Z [d, m, m]
/// end to end on large images. PatchGD: per mini-batch, Z is filled without gradients, then
/// --inner-steps k times a random --sample-fraction s of the patches is recomputed with
/// gradients and written into Z, the head's loss back-propagated; the gradients are summed and
/// the optimiser steps once. --method gd is the baseline: every patch with gradients at once
/// (the whole image in memory). Writes OUT/backbone.onnx, OUT/head.onnx and OUT/card.json
/// (grid geometry, per-epoch test accuracy, peak RSS).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim data ultramnist --size 512 --n 2000 -o um512\n  \
edgeslim train-patch --data um512 --image-size 512 --patch 64 --inner-steps 2 --sample-fraction 0.25 --memory-cap 1GiB -o pgd512\n  \
edgeslim train-patch --data um512 --method gd --image-size 256 --patch 32 --memory-cap 1GiB -o gd256\n  \
edgeslim train-patch --data um512 --backbone mobilenetv2 --image-size 512 --patch 64 --memory-cap 1GiB -o pgd512-mnv2")]
pub struct Args {
    /// An UltraMNIST-style folder (`edgeslim data ultramnist`).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "patchgd")]
    method: MethodArg,
    /// Train at this image side (the folder's images are resized when it differs).
    #[arg(long, value_name = "PX")]
    image_size: usize,
    /// Patch side; must divide --image-size (the grid is image-size / patch per side).
    #[arg(long, default_value_t = 64, value_name = "PX")]
    patch: usize,
    /// PatchGD's inner steps k per mini-batch.
    #[arg(long, default_value_t = 2, value_name = "K")]
    inner_steps: usize,
    /// PatchGD's fraction s of the patches recomputed with gradients per inner step.
    #[arg(long, default_value_t = 0.25, value_name = "S")]
    sample_fraction: f64,
    #[arg(long, default_value_t = 8, value_name = "N")]
    batch_size: usize,
    #[arg(long, default_value_t = 5, value_name = "N")]
    epochs: usize,
    #[arg(long, default_value_t = 1e-3, value_name = "LR")]
    lr: f64,
    /// The patch backbone: `small` (Conv 3×3 + ReLU + MaxPool stages of --widths, trained from
    /// scratch) or a pretrained ImageNet CNN of the zoo catalogue (`mobilenetv2`, as in the
    /// paper; `efficientnet-lite0`), built for the patch size with a linear layer to
    /// --feature-dim (needs `edgeslim assets fetch`).
    #[arg(long, default_value = "small", value_name = "NAME")]
    backbone: String,
    /// d of a pretrained backbone (the width of Z).
    #[arg(long, default_value_t = 64, value_name = "D")]
    feature_dim: usize,
    /// Backbone stage widths (Conv 3×3 + ReLU + MaxPool 2 each); d is the last.
    #[arg(long, value_delimiter = ',', default_values_t = [16usize, 32, 64])]
    widths: Vec<usize>,
    #[arg(long, default_value_t = 64, value_name = "N")]
    head_width: usize,
    /// Stop with an error when the peak RSS passes this: 512MiB, 1GiB, 1.5GiB (checked after
    /// every mini-batch).
    #[arg(long, value_name = "SIZE")]
    memory_cap: Option<String>,
    /// Use at most N training images (quick runs).
    #[arg(long, value_name = "N")]
    max_train: Option<usize>,
    /// Use at most N test images.
    #[arg(long, value_name = "N")]
    max_test: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Engine threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Output folder: backbone.onnx, head.onnx, card.json.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Patchgd,
    Gd,
}

/// `512MiB`, `1GiB`, `1.5GiB`, `800MB` → bytes.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .with_context(|| format!("--memory-cap {s}: '{num}' is not a number"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        u => bail!("--memory-cap {s}: unknown unit '{u}' (use MiB or GiB)"),
    };
    if v.is_nan() || v <= 0.0 {
        bail!("--memory-cap {s}: must be positive");
    }
    Ok((v * mult) as u64)
}

pub fn run(a: Args) -> Result<()> {
    if a.output.exists() && !a.output.is_dir() {
        bail!(
            "-o {}: exists and is not a folder (train-patch writes two graphs and a card into a folder)",
            a.output.display()
        );
    }
    let opts = TrainPatchOptions {
        method: match a.method {
            MethodArg::Patchgd => Method::Patchgd,
            MethodArg::Gd => Method::Gd,
        },
        image_size: a.image_size,
        patch: a.patch,
        inner_steps: a.inner_steps,
        fraction: a.sample_fraction,
        batch_size: a.batch_size,
        epochs: a.epochs,
        lr: a.lr,
        backbone: a.backbone.clone(),
        widths: a.widths.clone(),
        feature_dim: a.feature_dim,
        head_width: a.head_width,
        seed: a.seed,
        threads: a.threads,
        memory_cap: a.memory_cap.as_deref().map(parse_size).transpose()?,
        max_train: a.max_train,
        max_test: a.max_test,
        progress: !edgeslim_runtime::process::quiet(),
    };
    edgeslim::train::interrupt::install();
    let t = train(&a.data, &opts)?;
    if t.report.stopped.is_some() && edgeslim::train::interrupt::requested() {
        eprintln!("edgeslim: interrupted; nothing written");
        std::process::exit(130);
    }
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    t.backbone
        .save(&a.output.join("backbone.onnx"), &SaveOptions::default())?;
    t.head
        .save(&a.output.join("head.onnx"), &SaveOptions::default())?;
    let card = serde_json::to_vec_pretty(&t.report)?;
    edgeslim_runtime::fsutil::write_atomic(&a.output.join("card.json"), &card)?;
    let r = &t.report;
    println!(
        "{} at {}² ({}×{} patches of {}, d = {}): test accuracy {:.2} % on {} images after {} epochs, {:.0} s, peak RSS {} MiB -> {}",
        match opts.method {
            Method::Patchgd => format!(
                "PatchGD (k = {}, {} of {} patches with gradients)",
                opts.inner_steps,
                r.sampled,
                r.grid.positions()
            ),
            Method::Gd => "plain gradient descent".into(),
        },
        opts.image_size,
        r.grid.m(),
        r.grid.m(),
        opts.patch,
        r.dim,
        100.0 * r.test_accuracy,
        r.test_samples,
        r.epochs.len(),
        r.train_seconds,
        r.peak_rss_bytes.unwrap_or(0) >> 20,
        a.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn memory_sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("800MB").unwrap(), 800_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("0MiB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
