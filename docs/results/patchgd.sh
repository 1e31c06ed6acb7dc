#!/usr/bin/env bash
# docs/results/patchgd.md: PatchGD against plain gradient descent under one memory cap on
# UltraMNIST-style images, and the board's patch inference memory as the image grows.
#
#   bash docs/results/patchgd.sh [OUT_DIR]          (default: patchgd/)
#
# 1. Data: `edgeslim data ultramnist --size 512 --n N` (N default 600: 480 train, 120 test).
# 2. Training under CAP (default 1GiB), EPOCHS (2) epochs, batch 4, one engine thread:
#    PatchGD at 512² (8×8 patches of 64, k = 2, s = 0.25; s = 0.125 if the cap stops it), and
#    plain gradient descent through the same two graphs at the largest of 512², 256², 128²
#    that the cap lets finish (each size its own process: the cap is checked on the process's
#    peak RSS after every mini-batch).
# 3. Board: `edgeslim-rt patch` with the PatchGD model on 1024², 2048² and 4096² canvases
#    (RUNS runs each, one thread): peak RSS and time to fill Z, each size its own process.
#    AARCH64_RT=path/to/aarch64/edgeslim-rt repeats it under qemu-aarch64.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-patchgd}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim -p edgeslim-runtime >&2
ES=${ES:-target/release/edgeslim}
RT=${RT:-target/release/edgeslim-rt}
"$ES" assets fetch >&2
N=${N:-600}
CAP=${CAP:-1GiB}
EPOCHS=${EPOCHS:-2}
RUNS=${RUNS:-3}
COMMON=(--epochs "$EPOCHS" --batch-size 4 --threads 1 --memory-cap "$CAP" --quiet)

[ -d "$OUT/um512" ] || "$ES" data ultramnist --size 512 --n "$N" --seed 0 -o "$OUT/um512" >&2

row() { # folder
  jq -r '"| \(.options.method) | \(.options.image_size)² | \(.grid.patch) | \(.sampled) of \(.grid.side / .grid.patch | . * .) | \(.test_accuracy * 1000 | round / 10) % | \(.epochs | map("\(.test_accuracy * 1000 | round / 10)") | join(" → ")) | \(.peak_rss_bytes / 1048576 | round) MiB | \(.train_seconds | round) |"' "$1/card.json"
}

echo "### Training under a $CAP cap ($EPOCHS epochs, $(jq .train "$OUT/um512/meta.json") training and $(jq .test "$OUT/um512/meta.json") test images)"
echo
echo "| method | image | patch | patches with gradients | test accuracy | per epoch | peak RSS | s |"
echo "|---|---|---|---|---|---|---|---|"
pgd=""
for s in 0.25 0.125; do
  d=$OUT/pgd-512-s$s
  [ -f "$d/card.json" ] || "$ES" train-patch --data "$OUT/um512" --image-size 512 --patch 64 \
    --inner-steps 2 --sample-fraction "$s" "${COMMON[@]}" -o "$d" >&2 || { echo "PatchGD s = $s: over the cap" >&2; continue; }
  pgd=$d; row "$d"; break
done
for size in 512 256 128; do
  d=$OUT/gd-$size
  [ -f "$d/card.json" ] || "$ES" train-patch --data "$OUT/um512" --method gd --image-size "$size" \
    --patch $((size / 8)) "${COMMON[@]}" -o "$d" >&2 || { echo "| gd | ${size}² | $((size / 8)) | all | over the $CAP cap | | | |"; continue; }
  row "$d"; break
done
echo

[ -n "$pgd" ] || { echo "no PatchGD model under the cap: no board table" >&2; exit 0; }
board() { # label, runtime command...
  local label=$1; shift
  for size in 1024 2048 4096; do
    img=$OUT/canvas-$size/test
    [ -d "$img" ] || "$ES" data ultramnist --size "$size" --n 2 --seed 1 -o "$OUT/canvas-$size" >&2
    f=$(ls "$img"/*.png | head -1)
    "$@" patch --model "$pgd" --input "$f" --threads 1 --runs "$RUNS" --json "$OUT/board-$label-$size.json" > /dev/null
    jq -r --arg l "$label" --arg s "$size" '
      "| \($l) | \($s)² | \(.images[0].result.grid | "\(.[0])×\(.[1])") | \($s | tonumber | . * . * 4 / 1048576 | round) MiB | \(.peak_rss_bytes / 1048576 | round) MiB | \(.images[0].fill_ms | sort | .[length / 2 | floor] | round) ms |"' \
      "$OUT/board-$label-$size.json"
  done
}
echo "### The board's patch inference as the image grows ($RUNS runs, one thread)"
echo
echo "| runtime | image | grid | the image as a float tensor | peak RSS | fill Z, p50 |"
echo "|---|---|---|---|---|---|"
board x86-64 "$RT"
if [ -n "${AARCH64_RT:-}" ]; then
  board "aarch64 (qemu)" qemu-aarch64-static -L /usr/aarch64-linux-gnu "$AARCH64_RT"
fi
