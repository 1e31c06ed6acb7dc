//! Pretrained models from PyPI packages, imported without Python (docs/zoo-import.md):
//! PyTorch state dicts read by our restricted unpickler ([`edgeslim_data::torch`]) and written
//! as ONNX graphs by our own builders ([`efficientnet_lite`], [`mobilenetv2`]); the DINOv2
//! ViT-S/14 backbone cut out of a saliency model by our IR, its position embedding resampled
//! for the chosen input size ([`dinov2`]); any of them as a classifier of a small grayscale
//! data set ([`gray`]); ImageNet labels and preprocessing ([`imagenet`]);
//! the catalogue tying each name to its package, licence and preprocessing ([`catalogue`]).

pub mod bicubic;
pub mod card;
pub mod catalogue;
pub mod convnet;
pub mod dinov2;
pub mod efficientnet_lite;
pub mod gray;
pub mod imagenet;
pub mod mobilenetv2;
pub mod state;

pub use edgeslim_onnx::{Error, Result};
