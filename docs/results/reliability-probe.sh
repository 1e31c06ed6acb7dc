#!/usr/bin/env bash
# The reliability probe re-run as one script (docs/results/reliability.md): hostile models and
# inputs made from the real PP-OCR classifier, through edgeslim-rt bench/run and edgeslim
# inspect/optimize, each run classified clean / panic / abort / hang / wrong with its peak RSS.
# Usage: docs/results/reliability-probe.sh [OUT_DIR]   (about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/edgeslim-reliability-probe}
venv=${EDGESLIM_PROBE_VENV:-/tmp/edgeslim-probe-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "onnx==1.23.2" "onnxruntime==1.32.0" numpy pillow
fi
cargo build --release --workspace
bins="${CARGO_TARGET_DIR:-target}/release"
"$bins/edgeslim" assets fetch --quiet > /dev/null
cls="$("$bins/edgeslim" assets path | cut -d' ' -f1)/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
mkdir -p "$out"
"$venv/bin/python" docs/results/reliability_probe.py "$bins" "$cls" "$out/work" 60 | tee "$out/probe.json"
