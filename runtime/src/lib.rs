//! edgeslim-runtime: the board side of edgeslim. Loads ONNX models with tract, runs and
//! benchmarks them with per-node profiling, and reports device facts. No Python, no protobuf
//! writer: what ships to a Raspberry Pi or Jetson.

pub mod bench;
pub mod device;
pub mod error;
pub mod fsutil;
pub mod graph_check;
pub mod input;
pub mod inspect;
pub mod io;
pub mod json_out;
pub mod macs;
pub mod model;
pub mod patch;
pub mod plan;
pub mod process;
pub mod profile;
pub mod progress;
pub mod report;
#[cfg(feature = "serve")]
pub mod serve;
pub mod shapes;
pub mod stats;
pub mod stream;
pub mod tile;
pub mod track;
pub mod view;

pub use error::{Result, RuntimeError};
pub use model::{LoadOptions, LoadedModel};
pub use shapes::InputShape;

/// Re-exported so host tools and tests use the exact tract the runtime uses.
pub use tract_onnx;
