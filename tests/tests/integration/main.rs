//! edgeslim's end-to-end tests as one binary (as ripgrep's `tests/integration`): one link of
//! the host library instead of one per file. A module per feature; run one with
//! `cargo test --release --workspace --test integration prune::` (after `cargo build
//! --release --workspace`, which builds the binaries the tests run).

mod anomaly;
mod bench_json;
mod boards;
mod cli;
mod demo;
mod deploy;
mod engines;
mod errors;
mod families;
mod glora;
mod growth;
mod inspect;
mod lowrank;
mod metadock;
mod optimize;
mod patchgd;
mod pipeline;
mod pretrained;
mod prune;
mod qemu;
mod quantize;
mod recipe;
mod speed;
mod study;
mod track;
mod train_cli;
mod train_data;
mod train_engine;
mod vitslim;
mod zoo;
