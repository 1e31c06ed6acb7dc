//! `edgeslim`: the host side. Each subcommand lives in `cmd/`, the work in the library.

mod cmd;

use clap::{CommandFactory, FromArgMatches};
use edgeslim_runtime::process;

fn main() {
    process::init_cli();
    let engines = [
        format!("tract {}", process::TRACT_VERSION),
        if cfg!(feature = "ort") {
            format!(
                "ort {} (ONNX Runtime {} loaded at run time from the asset cache)",
                process::ORT_VERSION,
                edgeslim::data::assets::ONNXRUNTIME_VERSION
            )
        } else {
            "ort: not built in (feature ort off)".to_string()
        },
    ];
    let mut features: Vec<&str> = Vec::new();
    if cfg!(feature = "ort") {
        features.push("ort");
    }
    features.extend(process::runtime_features());
    let command = cmd::Cli::command()
        .long_version(process::long_version(&engines, &features))
        .after_help(format!(
            "Start with `edgeslim demo`, or `edgeslim inspect MODEL.onnx`. The flags and outputs \
             every command shares: docs/cli.md.\n\n{}",
            process::EXIT_CODES
        ));
    let cli = match cmd::Cli::from_arg_matches(&command.get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    process::init_logging(cli.verbosity);
    let args: Vec<String> = std::env::args().skip(1).collect();
    edgeslim::onnx::provenance::enable(&format!("edgeslim {}", env!("CARGO_PKG_VERSION")), &args);
    if let Err(e) = cmd::run(cli) {
        eprintln!("edgeslim: error: {}", cmd::error_line(&e));
        std::process::exit(1);
    }
}
