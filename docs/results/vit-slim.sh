#!/usr/bin/env bash
# Reproduces docs/results/vit-slim.md: ViT-Slim against two magnitude baselines on the zoo ViT
# (MNIST) at the same parameter budgets and the same number of training epochs, then every
# model timed side by side (interleaved, tract) and evaluated in tract on the same held-out
# digits; and ViT-Slim on DINOv2 ViT-S/14 at 112² with a linear probe on Animal-MNIST.
#
#   bash docs/results/vit-slim.sh [OUT_DIR]        (default: vit-slim-results/)
#   SEARCH=10 RETRAIN=10 BUDGETS="0.8 0.6 0.4" DINO=1 ... to change the defaults
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-vit-slim-results}
mkdir -p "$OUT"
[[ -n ${NO_BUILD:-} ]] || cargo build --release -p edgeslim >&2
ES=${ES:-target/release/edgeslim}
"$ES" assets fetch >&2
VIT=models/vit-tiny-mnist.onnx
SEARCH=${SEARCH:-10}
RETRAIN=${RETRAIN:-10}
TOTAL=$((SEARCH + RETRAIN))
BUDGETS=${BUDGETS:-0.8 0.6 0.4}
# The existing pruner (whole heads and MLP units by l1, one ratio for every group) has a
# channel ratio, not a budget: these ratios land near the budgets above (see the table).
RATIOS=${RATIOS:-0.2 0.4 0.6}

slim() { # name, then extra arguments
  local name=$1; shift
  [[ -f $OUT/$name.onnx ]] && return
  "$ES" compress vit-slim "$@" --runs 0 -o "$OUT/$name.onnx" --report "$OUT/$name" \
    --json "$OUT/$name.json" 2> "$OUT/$name.log"
}

for b in $BUDGETS; do
  slim "vit-learned-$b" "$VIT" --data mnist --budget "params=$b" \
    --search-epochs "$SEARCH" --retrain-epochs "$RETRAIN"
  slim "vit-magnitude-$b" "$VIT" --data mnist --budget "params=$b" --selection magnitude \
    --retrain-epochs "$TOTAL"
  # Speed-minded variants: head sizes and MLP widths in multiples of 8; whole heads.
  slim "vit-learned-r8-$b" "$VIT" --data mnist --budget "params=$b" --round-to 8 \
    --search-epochs "$SEARCH" --retrain-epochs "$RETRAIN"
  slim "vit-heads-$b" "$VIT" --data mnist --budget "params=$b" --masks heads,mlp \
    --search-epochs "$SEARCH" --retrain-epochs "$RETRAIN"
done
for r in $RATIOS; do
  [[ -f $OUT/vit-prune-$r.onnx ]] && continue
  "$ES" compress prune "$VIT" --ratio "$r" --finetune mnist --epochs "$TOTAL" \
    -o "$OUT/vit-prune-$r.onnx" > "$OUT/vit-prune-$r.txt" 2> "$OUT/vit-prune-$r.log"
done

# Every model in tract on the same held-out digits, and one interleaved benchmark per
# thread count (1: a Pi core; 2: this machine's cores).
models=("$VIT")
for b in $BUDGETS; do
  models+=("$OUT/vit-learned-$b.onnx" "$OUT/vit-magnitude-$b.onnx" "$OUT/vit-learned-r8-$b.onnx"
    "$OUT/vit-heads-$b.onnx")
done
for r in $RATIOS; do models+=("$OUT/vit-prune-$r.onnx"); done
for m in "${models[@]}"; do
  [[ -f $OUT/$(basename "$m" .onnx).eval.json ]] && continue
  "$ES" -q eval "$m" --task classify --data mnist --json "$OUT/$(basename "$m" .onnx).eval.json" > /dev/null
done
for t in 1 2; do
  "$ES" -q bench "${models[@]}" --input-shape x=1,1,28,28 --runs "${RUNS:-300}" --threads "$t" \
    --json "$OUT/bench-$t.json" > /dev/null
done

# DINOv2 ViT-S/14 at 112² with a linear probe on Animal-MNIST (slow: ~20 samples/s forward
# on 2 cores; short runs on a fixed 400-sample held-out subset).
if [[ -n ${DINO:-1} && ${DINO:-1} != 0 ]]; then
  DDIR=$OUT/dinov2-112
  [[ -f $DDIR/classifier-animal-mnist.onnx ]] || "$ES" zoo import dinov2-s14 --size 112 -o "$DDIR" \
    --runs 0 --head animal-mnist --probe-epochs 2 --probe-batches 40 > "$DDIR.probe.txt" 2>&1
  D=$DDIR/classifier-animal-mnist.onnx
  DB=${DINO_BUDGET:-0.65}
  # A pretrained backbone fine-tunes at a small rate (1e-3 destroyed it: 9 % after one
  # epoch); the masks keep a rate at which 30 steps can move them.
  DCOMMON=(--data animal-mnist --budget "params=$DB" --held-out 400 --max-batches "${DINO_BATCHES:-30}"
    --lr "${DINO_LR:-5e-5}")
  slim dino-learned "$D" "${DCOMMON[@]}" --mask-lr 1e-2 --search-epochs 1 --retrain-epochs 1
  slim dino-magnitude "$D" "${DCOMMON[@]}" --selection magnitude --retrain-epochs 2
  "$ES" -q bench "$D" "$OUT/dino-learned.onnx" "$OUT/dino-magnitude.onnx" --input-shape x=1,1,28,28 \
    --runs 30 --threads 2 --json "$OUT/bench-dino.json" > /dev/null
fi
bash docs/results/vit-slim-tables.sh "$OUT"
