//! The runtime's model loader on arbitrary bytes: decode, the semantic checks, tract's typing
//! and optimisation, and one run on zero inputs when the model loads. libFuzzer aborts on any
//! panic, caught or not, as the board build (panic = "abort") does.
#![no_main]

use edgeslim_runtime::{LoadOptions, LoadedModel};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let opts = LoadOptions {
        // A fuzz input must not reach the 4 GiB default: keep each case small and fast.
        max_tensor_bytes: 64 << 20,
        threads: 1,
        ..LoadOptions::default()
    };
    let Ok(model) = LoadedModel::from_bytes(data.to_vec(), Path::new("fuzz.onnx"), None, &opts)
    else {
        return;
    };
    let inputs = edgeslim_runtime::input::random_inputs(&model.inputs, 0);
    let _ = model.run(inputs);
});
