//! GLoRA (Chavan et al., 2023; `shared/methods.md` §5) on any ONNX network: generalised
//! adapters on the weights and biases of its linear and convolution layers, trained while the
//! network stays frozen, then merged into its plain weights — the deployed model has the
//! input's graph, size and latency.
//!
//! [`layers`] finds what can be wrapped, [`support`] says what each term trains, [`adapter`]
//! inserts the adapters and merges them back.

pub mod adapter;
pub mod layers;
pub mod run;
pub mod supernet;
pub mod support;

pub use adapter::{insert, merge, Adapter};
pub use run::{adapt, adapt_split, AdaptLatency, AdaptOptions, AdaptReport, Method};
pub use support::{LayerSupport, Support};
