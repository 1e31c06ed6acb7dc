//! The command line (design.md §4). One module per subcommand; each parses nothing itself
//! beyond its clap struct and calls into the library.

mod assets;
mod bench;
mod demo;
mod inspect;
mod optimize;
mod report;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgeslim",
    version,
    about = "Compress ONNX models on the host and run them on small ARM boards",
    after_help = "Start with `edgeslim demo`, or `edgeslim inspect MODEL.onnx`."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Inspect(inspect::Args),
    Optimize(optimize::Args),
    Bench(bench::Args),
    Report(report::Args),
    Assets(assets::Args),
    Demo(demo::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Optimize(a) => optimize::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Report(a) => report::run(a),
        Command::Assets(a) => assets::run(a),
        Command::Demo(a) => demo::run(a),
    }
}
