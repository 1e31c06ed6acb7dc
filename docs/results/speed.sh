#!/usr/bin/env bash
# Reproduces docs/results/speed.md on this machine (about 15 minutes without the board
# builds; add BOARD=1 for the board-profile comparison, about 25 more minutes per build).
# Every comparison is interleaved: the variants alternate run by run (edgeslim bench with
# several models or --backend both) or process by process (the profile comparison).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
es=$root/target/release/edgeslim
rt=$root/target/release/edgeslim-rt
out=${OUT:-$root/target/speed}
m=$HOME/.cache/edgeslim/models
mkdir -p "$out"
"$es" assets fetch >/dev/null
cp "$m/ch_PP-OCRv4_det_infer.onnx" "$out/det.onnx"
cp "$m/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$out/cls.onnx"

# 1. Tract-friendly rewrites: original vs optimised, side by side on tract, then both engines.
"$es" optimize "$out/cls.onnx" -o "$out/cls-opt.onnx" -v
"$es" optimize "$out/det.onnx" -o "$out/det-opt.onnx" -v
"$es" bench "$out/cls.onnx" "$out/cls-opt.onnx" --input-shape x=1,3,48,192 --runs 1000 \
  --threads 1 --json "$out/cls-rewrites.json"
"$es" bench "$out/det.onnx" "$out/det-opt.onnx" --input-shape x=1,3,320,320 --runs 200 \
  --threads 1 --json "$out/det-rewrites.json"
for m in cls cls-opt; do
  "$es" bench "$out/$m.onnx" --input-shape x=1,3,48,192 --backend both --threads 1 --runs 500 \
    --json "$out/$m-engines.json"
done
for m in det det-opt; do
  "$es" bench "$out/$m.onnx" --input-shape x=1,3,640,640 --backend both --threads 1 --runs 20 \
    --json "$out/$m-engines.json"
done

# 2. Our runtime vs a plain tract loop on the same graph.
for m in cls-opt det-opt; do
  shape=x=1,3,48,192; [ $m = det-opt ] && shape=x=1,3,320,320
  "$es" bench "$out/$m.onnx" --input-shape $shape --vs-raw-tract --runs 300 --threads 1 \
    --json "$out/$m-raw.json"
done

# 3. Every core: threads 1/2 interleaved, frame pipelining (speed-threads.sh), strips.
cp "$rt" "$out/"
bash "$root/docs/results/speed-threads.sh" "$out" "$out/threads" 1 2
"$es" optimize "$out/det.onnx" --outputs p2o.Add.147 -o "$out/det-backbone.onnx"
"$rt" bench "$out/det-backbone.onnx" --input-shape x=1,3,1024,256 --tiles 2 --runs 10 \
  --json "$out/backbone-tiles.json"

# 4. int8 as int8: QOperator form, kernels on x86 and (under qemu) aarch64.
"$es" compress quantize "$out/cls.onnx" --input-shape x=1,3,48,192 --int8 --format qoperator \
  --calib ppocr-text -o "$out/cls-q8.onnx" --report "$out/cls-q8"
"$rt" plan "$out/cls-q8.onnx" --input-shape x=1,3,48,192 | tail -1
if [ -n "${AARCH64_RT:-}" ]; then   # an aarch64 edgeslim-rt, e.g. from edgeslim build --target rpi4
  for cpu in cortex-a53 cortex-a72 cortex-a76; do
    qemu-aarch64-static -cpu $cpu -L /usr/aarch64-linux-gnu "$AARCH64_RT" plan \
      "$out/cls-q8.onnx" --input-shape x=1,3,48,192 | tail -1
  done
fi

# 5. Board profile vs release, x86 (optional: two full builds).
if [ -n "${BOARD:-}" ]; then
  "$es" build --target x86_64 --json > "$out/board-build.json"
  board=$(python3 -c "import json;print(json.load(open('$out/board-build.json'))['binary'])")
  for round in 1 2 3 4 5 6 7 8; do
    for b in "$rt" "$board"; do
      n=$( [ "$b" = "$rt" ] && echo release || echo board )
      "$b" bench "$out/cls.onnx" --input-shape x=1,3,48,192 --runs 300 --json "$out/prof-cls-$n-$round.json" >/dev/null
      "$b" bench "$out/det.onnx" --input-shape x=1,3,320,320 --runs 30 --json "$out/prof-det-$n-$round.json" >/dev/null
    done
  done
fi
echo "reports in $out"
