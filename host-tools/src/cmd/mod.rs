//! The command line (README.md). One module per subcommand; each parses nothing itself
//! beyond its clap struct and calls into the library.

mod adapt;
mod analyze;
mod anomaly;
mod assets;
mod bench;
mod build;
mod bundle;
mod compress;
mod data;
mod demo;
mod deploy;
mod eval;
mod eval_classify;
mod fit;
mod grow;
mod inspect;
mod meta;
mod optimize;
mod prune;
mod prune_tracker;
mod report;
mod run;
mod study;
mod targets;
mod train;
mod train_patch;
mod vit_slim;
mod zoo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgeslim",
    version,
    about = "Compress ONNX models on the host and run them on small ARM boards",
    after_help = "Start with `edgeslim demo`, or `edgeslim inspect MODEL.onnx`. The flags and \
                  outputs every command shares: docs/cli.md."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    pub verbosity: edgeslim_runtime::process::Verbosity,
}

#[derive(Subcommand)]
enum Command {
    Inspect(inspect::Args),
    Optimize(optimize::Args),
    Bench(bench::Args),
    Report(report::Args),
    Assets(assets::Args),
    Demo(demo::Args),
    Analyze(analyze::Args),
    /// Gaussian anomaly detection: fit a detector on good parts, make MVTec-layout data.
    Anomaly(anomaly::Args),
    /// Task metrics of a model on a data folder (anomaly: image/pixel AUROC, PRO).
    Eval(eval::Args),
    /// Train a model from a recipe (family + sizes + data) and write ONNX plus a model card.
    Train(train::TrainArgs),
    /// Fine-tune or distil an ONNX classifier on `mnist` or `folder:DIR` data.
    Finetune(train::FinetuneArgs),
    Compress(compress::Args),
    /// Write generated data sets to disk (tracking sequences in OTB layout).
    Data(data::Args),
    Targets(targets::Args),
    Build(build::Args),
    Bundle(bundle::Args),
    /// Does a model fit on a board: peak RSS (measured with the board's runtime) against its RAM, latency estimate.
    Fit(fit::Args),
    /// Run a recipe: a model through optimize / compress / recovery / eval / bench / fit / bundle steps, resumable.
    Run(run::Args),
    Deploy(deploy::Args),
    Zoo(zoo::Args),
    /// Every compression method at every budget on one model, measured the same way: table, Pareto chart, resumable.
    Study(study::Args),
    /// Transfer a network to a labelled task: linear probe, full fine-tuning, LoRA or GLoRA (adapters merged into plain weights).
    Adapt(adapt::Args),
    /// Train a CNN on very large images with PatchGD (a latent map filled patch by patch) under a memory cap, or plain gradient descent as the baseline; writes the patch backbone and the head.
    TrainPatch(train_patch::Args),
    /// Meta-learning (MAML, first-order MAML, iMAML) of a Conv-4 on few-shot episodes, with MetaDOCK's per-kernel gates; each task's model exported with only its active kernels.
    Meta(meta::Args),
    /// Train a ViT from half width while growing, neuron by neuron, the MLP units whose splitting matrices say growth lowers the loss, under a parameter budget.
    Grow(grow::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Optimize(a) => optimize::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Report(a) => report::run(a),
        Command::Assets(a) => assets::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Analyze(a) => analyze::run(a),
        Command::Anomaly(a) => anomaly::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Train(a) => train::train(a),
        Command::Finetune(a) => train::finetune(a),
        Command::Compress(a) => compress::run(a),
        Command::Data(a) => data::run(a),
        Command::Targets(a) => targets::run(a),
        Command::Build(a) => build::run(a),
        Command::Zoo(a) => zoo::run(a),
        Command::Bundle(a) => bundle::run(a),
        Command::Fit(a) => fit::run(a),
        Command::Run(a) => run::run(a),
        Command::Deploy(a) => deploy::run(a),
        Command::Study(a) => study::run(a),
        Command::Adapt(a) => adapt::run(a),
        Command::TrainPatch(a) => train_patch::run(a),
        Command::Meta(a) => meta::run(a),
        Command::Grow(a) => grow::run(a),
    }
}

/// The error as one line for the terminal. Library errors name a bad option by its library name
/// (`Error::Option { option: "keep_params", .. }`); here it becomes the flag that set it
/// (`--keep-params 1.5: must be in (0, 1]`): the one place that knows options are flags.
pub fn error_line(e: &anyhow::Error) -> String {
    edgeslim_runtime::error::one_line_with(e, |cause| match cause.downcast_ref() {
        Some(edgeslim::Error::Option {
            option,
            value,
            reason,
        }) => Some(as_flag(option, value.as_deref(), reason)),
        _ => None,
    })
}

/// `keep_params`, `1.5`, `reason` -> `--keep-params 1.5: reason`.
fn as_flag(option: &str, value: Option<&str>, reason: &str) -> String {
    let flag = format!("--{}", option.replace('_', "-"));
    match value {
        Some(v) => format!("{flag} {v}: {reason}"),
        None => format!("{flag}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_option_errors_read_as_the_flags_that_set_them() {
        let e = anyhow::Error::new(edgeslim::Error::option_value(
            "keep_params",
            1.5,
            "must be in (0, 1]",
        ))
        .context("pruning tracker/");
        assert_eq!(
            error_line(&e),
            "pruning tracker/: --keep-params 1.5: must be in (0, 1]"
        );
        // The library's own words name the option, not a flag.
        let lib = edgeslim::Error::option("calib", "int8 needs calibration data");
        assert_eq!(lib.to_string(), "option calib: int8 needs calibration data");
    }
}
