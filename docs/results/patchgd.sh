#!/usr/bin/env bash
# docs/results/patchgd.md: PatchGD against plain gradient descent under one memory cap on
# UltraMNIST-style images, and the board's patch inference memory as the image grows.
#
#   bash docs/results/patchgd.sh [OUT_DIR]          (default: patchgd/)
#
# 1. Data: `edgeslim data ultramnist --size 512 --n N` (N default 600: 480 train, 120 test).
# 2. Training, each comparison one table: PatchGD at the full size (8×8 patches, k = 2, the
#    first fraction s of FRACTIONS the cap lets finish) against plain gradient descent through
#    the same two graphs at the largest of the full size, its half and its quarter that the cap
#    lets finish (each run its own process: the cap is checked on the process's peak RSS after
#    every mini-batch). The comparisons (COMPARE, default all three):
#      small-512   the small backbone at 512², CAP (1GiB), batch 4, EPOCHS (2) epochs;
#      small-256   the small backbone at 256² under a second, tighter cap CAP2 (300MiB), on
#                  N2 (1000) images, EPOCHS2 (4) epochs;
#      mnv2-512    the pretrained MobileNetV2 (`--backbone mobilenetv2`, the paper's) at 512²,
#                  CAP3 (2GiB), batch 2, EPOCHS (2) epochs.
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
N2=${N2:-1000}
EPOCHS=${EPOCHS:-2}
EPOCHS2=${EPOCHS2:-4}
RUNS=${RUNS:-3}
COMPARE=${COMPARE:-small-512 small-256 mnv2-512}

row() { # folder
  jq -r '"| \(.options.method) | \(.options.image_size)² | \(.grid.patch) | \(.sampled) of \(.grid.side / .grid.patch | . * .) | \(.test_accuracy * 1000 | round / 10) % | \(.epochs | map("\(.test_accuracy * 1000 | round / 10)") | join(" → ")) | \(.epochs | map("\(.train_loss * 100 | round / 100)") | join(" → ")) | \(.peak_rss_bytes / 1048576 | round) MiB | \(.train_seconds | round) |"' "$1/card.json"
}

pgd=""
compare() { # name, data folder, full size, cap, epochs, batch, fractions, train-patch options...
  local name=$1 data=$2 size=$3 cap=$4 epochs=$5 batch=$6 fractions=$7; shift 7
  local common=(--epochs "$epochs" --batch-size "$batch" --threads 1 --memory-cap "$cap" --quiet "$@")
  echo "### $name: under a $cap cap ($epochs epochs, batch $batch, $(jq .train "$data/meta.json") training and $(jq .test "$data/meta.json") test images${*:+, $*})"
  echo
  echo "| method | image | patch | patches with gradients | test accuracy | per epoch | train loss per epoch | peak RSS | s |"
  echo "|---|---|---|---|---|---|---|---|---|"
  local s d sz
  for s in $fractions; do
    d=$OUT/$name-pgd-s$s
    [ -f "$d/card.json" ] || "$ES" train-patch --data "$data" --image-size "$size" --patch $((size / 8)) \
      --inner-steps 2 --sample-fraction "$s" "${common[@]}" -o "$d" >&2 \
      || { echo "| patchgd (s = $s) | ${size}² | $((size / 8)) | | over the $cap cap | | | | |"; continue; }
    [ "$name" = small-512 ] && pgd=$d
    row "$d"; break
  done
  for sz in "$size" $((size / 2)) $((size / 4)); do
    d=$OUT/$name-gd-$sz
    [ -f "$d/card.json" ] || "$ES" train-patch --data "$data" --method gd --image-size "$sz" \
      --patch $((sz / 8)) "${common[@]}" -o "$d" >&2 \
      || { echo "| gd | ${sz}² | $((sz / 8)) | all | over the $cap cap | | | | |"; continue; }
    row "$d"; break
  done
  echo
}

[ -d "$OUT/um512" ] || "$ES" data ultramnist --size 512 --n "$N" --seed 0 -o "$OUT/um512" >&2
for c in $COMPARE; do
  case $c in
    small-512) compare small-512 "$OUT/um512" 512 "${CAP:-1GiB}" "$EPOCHS" 4 "0.25 0.125" ;;
    small-256)
      [ -d "$OUT/um256" ] || "$ES" data ultramnist --size 256 --n "$N2" --seed 5 -o "$OUT/um256" >&2
      compare small-256 "$OUT/um256" 256 "${CAP2:-300MiB}" "$EPOCHS2" 4 "0.25 0.125" ;;
    mnv2-512)
      compare mnv2-512 "$OUT/um512" 512 "${CAP3:-2GiB}" "$EPOCHS" 2 "0.125 0.0625" --backbone mobilenetv2 ;;
    *) echo "unknown comparison $c" >&2; exit 2 ;;
  esac
done
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
