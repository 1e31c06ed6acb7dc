//! Train the Siamese tracker from a recipe: what `edgeslim train RECIPE.toml` does for
//! `family = "siamese"` recipes, plus overrides of the pair counts (quick experiments).
//!
//! ```sh
//! cargo run --release -p edgeslim --example train_tracker -- models/recipes/siamese-tracker.toml \
//!     [--epochs N] [--pairs N] [--val-pairs N] [--threads N]
//! ```

use anyhow::{Context, Result};
use edgeslim::train::recipe::Recipe;
use edgeslim::train::tracker::{train, TrackerRun};
use std::path::PathBuf;

fn flag(args: &[String], name: &str) -> Result<Option<usize>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            Ok(Some(
                v.parse()
                    .with_context(|| format!("{name} {v}: not a number"))?,
            ))
        }
    }
}

fn main() -> Result<()> {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    let path = PathBuf::from(args.get(1).context(
        "usage: train_tracker RECIPE.toml [--epochs N] [--pairs N] [--val-pairs N] [--threads N]",
    )?);
    let recipe = Recipe::load(&path)?;
    let run = TrackerRun {
        threads: flag(&args, "--threads")?.unwrap_or(0),
        command: format!(
            "cargo run --release -p edgeslim --example train_tracker -- {}",
            args[1..].join(" ")
        ),
        recipe_path: Some(path.clone()),
        epochs: flag(&args, "--epochs")?,
        pairs_per_epoch: flag(&args, "--pairs")?,
        val_pairs: flag(&args, "--val-pairs")?,
        ..TrackerRun::default()
    };
    let out = train(&recipe, &run)?;
    println!(
        "{}: best epoch {} of {}, {:.0} s; centre baseline peak error {:.1} px, within stride {:.1}%",
        recipe.name,
        out.best_epoch,
        out.history.len(),
        out.training_seconds,
        out.baseline_peak_error_px,
        100.0 * out.baseline_peak_within_stride
    );
    println!(
        "wrote {}, {}, {}",
        out.template.display(),
        out.search.display(),
        out.card.display()
    );
    Ok(())
}
