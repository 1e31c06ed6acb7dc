//! Boards: profiles (targets/*.toml), the cross toolchain, building the runtime for a board,
//! bundling it with models, and deploying a bundle over ssh (docs/boards.md).
//!
//! One job per file: `profile` (what a board is), `toolchain` (can this machine build for it),
//! `build` (cargo for the board), `elf` (what a binary is built for), `bundle` (the tarball),
//! `ssh` (running commands on the board), `deploy` (copy, unpack, check, bench).

pub mod build;
pub mod bundle;
pub mod deploy;
pub mod elf;
pub mod profile;
pub mod ssh;
pub mod toolchain;

pub use profile::{find, Profile};

pub use edgeslim_onnx::{Error, Result};

use std::path::PathBuf;

/// What can go wrong with boards. Each message is one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "unknown target '{name}'; known targets: {known} (or give the path of a profile TOML)"
    )]
    UnknownTarget { name: String, known: String },
    #[error("{origin}: not a valid board profile: {reason}")]
    Profile { origin: String, reason: String },
    #[error("cannot build for {target} ({triple}) on this machine: missing {missing}; install with: {commands}")]
    Toolchain {
        target: String,
        triple: String,
        missing: String,
        commands: String,
    },
    #[error("{0}")]
    Build(String),
    #[error("{path}: {reason}")]
    Binary { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("ssh {dest}: {reason}")]
    Ssh { dest: String, reason: String },
    #[error("{dest}: refusing to deploy: {reason}")]
    Refused { dest: String, reason: String },
}

impl From<TargetError> for Error {
    fn from(e: TargetError) -> Self {
        Error::Board(Box::new(e))
    }
}
