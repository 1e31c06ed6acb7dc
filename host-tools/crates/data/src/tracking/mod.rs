//! Tracking data generated from the real photographs of scikit-image (docs/architecture.md).
//!
//! A target — an object-like patch (a face, a cat's face, a cup, a rocket, a motorcycle, a
//! badge) cut from one photograph with a soft elliptical mask — moves over another photograph's
//! background with smooth and abrupt motion, scale change, in-plane rotation, motion blur,
//! illumination change (global gain and a light gradient, drifting and switching), partial
//! occlusion by a texture patch (brick, grass, gravel), a distractor (a tinted second copy of
//! the target's texture) and leaving the frame. Everything follows from a seed (ChaCha8).
//!
//! Two products:
//! - [`pairs`]: SiamFC training pairs — an exemplar (template) crop with context around the
//!   target, a search crop with the target displaced by a known offset, and the ground-truth
//!   response map (positives within a radius of the offset, at the network's stride).
//! - [`sequence`] / [`otb`]: whole sequences, in memory or written in OTB layout
//!   (`NAME/img/0001.jpg …`, `NAME/groundtruth_rect.txt`) for tracking evaluation.
//!
//! Box convention in memory: `[x, y, w, h]` in continuous pixel coordinates (pixel `(i, j)`
//! covers `[i, i+1) × [j, j+1)`), so `x` is the left edge. OTB files are 1-based (MATLAB
//! convention): the file holds `x + 1, y + 1, w, h`.

pub mod otb;
pub mod pairs;
pub mod scene;
pub mod sequence;

pub use otb::{read_groundtruth, write_otb_sequence, write_otb_sequence_with, SequenceInfo};
pub use pairs::{
    expected_peak, peak_error, Pair, PairBatch, PairConfig, PairGenerator, PairImages,
};
pub use scene::{Photos, TargetSpec, BACKGROUNDS, TARGETS, TEXTURES};
pub use sequence::{Frame, Sequence, SequenceConfig};
