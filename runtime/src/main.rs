//! `edgeslim-rt`: run and benchmark ONNX models on the board. The subcommands live in `cli/`,
//! the work in the `edgeslim_runtime` library.

mod cli;

use clap::Parser;

fn main() {
    edgeslim_runtime::process::init_cli();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = cli::Cli::parse();
    if let Err(e) = cli::run(&cli) {
        eprintln!(
            "edgeslim-rt: error: {}",
            edgeslim_runtime::error::one_line(&e)
        );
        std::process::exit(1);
    }
}
