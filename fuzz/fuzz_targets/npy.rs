//! The .npy reader (`edgeslim-rt run --input x.npy`) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = edgeslim_runtime::input::parse_npy(Path::new("fuzz.npy"), data);
});
