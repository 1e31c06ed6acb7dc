//! Object tracking on the board (`edgeslim-rt track`): a Siamese tracker ([`tracker`]) run by
//! tract, OTB-style evaluation ([`otb`], [`metrics`]), a PD pan-tilt head ([`pantilt`]), the
//! live page ([`page`]) and frame sources beyond image folders ([`video`]: ffmpeg).
//!
//! A tracker is two ONNX graphs in one folder (what `edgeslim train` writes for the
//! `siamese` family):
//! - `template.onnx`: `template [1,3,T,T]` → `kernel [C,1,h,w]`, run once when the target is
//!   (re-)initialised;
//! - `search.onnx`: `search [N,3,S,S]`, `kernel [C,1,h,w]` → `response [N,1,m,m]`, run every
//!   frame with the `N` scales of the search region in one call.
//!
//! Keeping them separate means the template branch costs nothing per frame, and the per-frame
//! stats can time the two branches separately.

pub mod draw;
pub mod live;
pub mod metrics;
pub mod otb;
pub mod page;
pub mod pair_manifest;
pub mod pantilt;
pub mod synthetic;
pub mod tracker;
pub mod video;

pub use metrics::{Rect, TrackMetrics};
pub use tracker::{TrackResult, TrackState, Tracker, TrackerModel, TrackerParams};
