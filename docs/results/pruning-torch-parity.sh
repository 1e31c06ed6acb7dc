#!/usr/bin/env bash
# Pruning parity with Torch-Pruning (docs/results/pruning-torch-parity.md).
# Usage: docs/results/pruning-torch-parity.sh [OUT_DIR] [ARCH...]
# Installs torch, torchvision and torch-pruning 1.6.1 into a virtual environment (PyPI; these
# are for this study only, never for the tests), builds edgeslim in release mode, and runs
# docs/results/pruning_torch_parity.py on each architecture.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/edgeslim-torch-parity}
shift || true
archs=("$@")
if [ ${#archs[@]} -eq 0 ]; then
  archs=(resnet18 resnet50 mobilenet_v2 mobilenet_v3_small densenet121 regnet_x_400mf
         resnext50_32x4d shufflenet_v2_x1_0 efficientnet_b0 convnext_tiny vit_b_16)
fi
venv=${EDGESLIM_PARITY_VENV:-/tmp/edgeslim-parity-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch torchvision torch-pruning==1.6.1 onnx onnxruntime
fi
cargo build --release --workspace
"$venv/bin/python" docs/results/pruning_torch_parity.py "${CARGO_TARGET_DIR:-target}/release" "$out" "${archs[@]}"
