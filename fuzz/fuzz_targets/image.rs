//! The image decoder of every image source (PNG and JPEG, decode budget, truncated JPEGs),
//! then the conversion to a model input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = edgeslim_runtime::input::decode_image(Path::new("fuzz.img"), data) {
        let _ = edgeslim_runtime::input::image_to_tensor(
            &img,
            &[1, 3, 32, 32],
            &edgeslim_runtime::input::ImagePrep::default(),
        );
    }
});
