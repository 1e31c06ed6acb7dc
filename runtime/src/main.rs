//! `edgeslim-rt`: run and benchmark ONNX models on the board. The subcommands live in `cli/`,
//! the work in the `edgeslim_runtime` library.

mod cli;

use clap::{CommandFactory, FromArgMatches};
use edgeslim_runtime::process;

fn main() {
    process::init_cli();
    let engines = [format!("tract {}", process::TRACT_VERSION)];
    let command = cli::Cli::command().long_version(process::long_version(
        &engines,
        &process::runtime_features(),
    ));
    let cli = match cli::Cli::from_arg_matches(&command.get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    process::init_logging(cli.verbosity);
    if let Err(e) = cli::run(&cli) {
        eprintln!(
            "edgeslim-rt: error: {}",
            edgeslim_runtime::error::one_line(&e)
        );
        std::process::exit(1);
    }
}
