#!/usr/bin/env bash
# The transformer row of the tracker study (docs/results/vit-slim.md): the zoo's ViT tracker
# (models/siamese-vit, 8×8 patch stem) and hybrid tracker (models/siamese-hybrid, CNN stem +
# the same blocks) slimmed with ViT-Slim to 50/25/10/1 % of the search graph's parameters
# (where ViT-Slim's floor allows; below it, at the floor), each as sliced and after
# fine-tuning, next to the CNN trackers pruned along the same levels (the zoo's
# siamese-tracker-pNN) — all on the tracking benchmark (6 generated OTB-layout sequences ×
# 100 frames, seed 7) by the board runtime's loop (tract, 1 thread), in this one run.
#
#   bash docs/results/vit-slim-tracker.sh [OUT_DIR]      (default: vit-slim-tracker/)
#
# SEARCH (default 3) and RETRAIN (default 5) epochs of 1280 pairs; SELECTIONS (default
# "learned magnitude"); MODELS (default "siamese-vit siamese-hybrid"); HEADS=0 skips the
# whole-heads row. ~1.5 min per epoch
# on 2 cores; the whole script ~2 h.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-vit-slim-tracker}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim -p edgeslim-runtime >&2
ES=${ES:-$PWD/target/release/edgeslim}
RT=${RT:-$PWD/target/release/edgeslim-rt}
"$ES" assets fetch >&2
DATA=$OUT/bench
[ -d "$DATA" ] || "$ES" data tracking -o "$DATA" --sequences 6 --frames 100 --seed 7 >&2
SEARCH=${SEARCH:-3}
RETRAIN=${RETRAIN:-5}
SELECTIONS=${SELECTIONS:-learned magnitude}
MODELS=${MODELS:-siamese-vit siamese-hybrid}

# params of a pair's search graph (every initializer's elements)
params() {
  python3 - "$1/search.onnx" <<'EOF'
import sys, onnx, numpy as np
m = onnx.load(sys.argv[1])
print(sum(int(np.prod(t.dims)) for t in m.graph.initializer))
EOF
}

row() { # label dir params0
  "$RT" track "$2" --eval "$DATA" --json "$2.eval.json" --threads 1 --quiet >&2
  local p
  p=$(params "$2")
  jq -r --arg l "$1" --arg p "$p" --arg p0 "$3" '
    def r3: . * 1000 | round / 1000 | tostring;
    "| \($l) | \($p) (\(($p | tonumber) / ($p0 | tonumber) * 1000 | round / 10) %) | \(.overall.auc | r3) | \(.overall.precision_20px | r3) | \(.fps * 10 | round / 10) | \(.mean_search_ms * 100 | round / 100) |"' "$2.eval.json"
}

: > "$OUT/shapes.txt"
shapes() { # label dir
  jq -r --arg l "$1" '"  \($l): blocks \(.blocks | map("\(.heads[1])×\(.head_dim[1])/\(.mlp_units[1])") | join(" ")); search \(.search_seconds | round) s, fine-tuning \(.retrain_seconds | round) s, peak RSS \(.peak_rss_bytes / 1048576 | round) MiB; search graph tract p50 \(.latency.original_p50_ms * 100 | round / 100) → \(.latency.slim_p50_ms * 100 | round / 100) ms"' "$2-report/report.json" >> "$OUT/shapes.txt"
}

echo "| tracker | params (search graph) | AUC | P@20 | fps (loop) | search ms/frame |"
echo "|---|---|---|---|---|---|"
P0=$(params models/siamese-tracker)
cp -r models/siamese-tracker "$OUT/cnn"
row "CNN (models/siamese-tracker)" "$OUT/cnn" "$P0"
for tag in p50 p25 p10 p01; do
  cp -r "models/siamese-tracker-$tag" "$OUT/cnn-$tag"
  row "CNN pruned to $((10#${tag#p})) %, fine-tuned 5 epochs (models/siamese-tracker-$tag)" "$OUT/cnn-$tag" "$P0"
done
for model in $MODELS; do
  P0=$(params "models/$model")
  cp -r "models/$model" "$OUT/$model"
  row "$model (models/$model)" "$OUT/$model" "$P0"
  for keep in 0.5 0.25 0.1 0.01; do
    budget=$keep
    note=""
    probe=$OUT/$model-probe
    if ! "$ES" compress vit-slim "models/$model" --data tracking:1 --budget "params=$keep" \
        --selection magnitude --retrain-epochs 0 --held-out 16 --runs 0 \
        -o "$probe" > /dev/null 2> "$probe.err"; then
      # Below ViT-Slim's floor (one head dimension per head, one MLP unit per block): slim
      # to the floor instead, and say so.
      floor=$(grep -o 'still has [0-9.]* %' "$probe.err" | grep -o '[0-9.]*' || true)
      [ -n "$floor" ] || { cat "$probe.err" >&2; exit 1; }
      budget=$(awk -v f="$floor" 'BEGIN { printf "%.3f", f / 100 + 0.002 }')
      note=" (below the floor: at $budget)"
    fi
    rm -rf "$probe" "$probe.err"
    for sel in $SELECTIONS; do
      d=$OUT/$model-$sel-$budget
      label="$model, $sel, $keep$note"
      # The baseline has no search: it gets the search's epochs as fine-tuning.
      epochs=$RETRAIN
      [ "$sel" = magnitude ] && epochs=$((SEARCH + RETRAIN))
      if [ ! -f "$d/search.onnx" ]; then
        "$ES" compress vit-slim "models/$model" --data tracking:1 --budget "params=$budget" \
          --selection "$sel" --search-epochs "$SEARCH" --retrain-epochs "$epochs" \
          --runs 100 -o "$d" --report "$d-report" >&2
      fi
      row "$label, sliced" "$d-report/sliced" "$P0"
      row "$label, fine-tuned $epochs epochs" "$d" "$P0"
      shapes "$label" "$d"
    done
  done
  # Whole heads instead of head dimensions: the softmax (heads × tokens²) shrinks too.
  [ "${HEADS:-1}" = 1 ] || continue
  d=$OUT/$model-heads-0.5
  if [ ! -f "$d/search.onnx" ]; then
    "$ES" compress vit-slim "models/$model" --data tracking:1 --budget params=0.5 \
      --masks heads,mlp --search-epochs "$SEARCH" --retrain-epochs "$RETRAIN" \
      --runs 100 -o "$d" --report "$d-report" >&2
  fi
  row "$model, learned, whole heads + MLP, 0.5, sliced" "$d-report/sliced" "$P0"
  row "$model, learned, whole heads + MLP, 0.5, fine-tuned $RETRAIN epochs" "$d" "$P0"
  shapes "$model, learned, whole heads + MLP, 0.5" "$d"
done
echo
echo "Searched shapes (heads×head size/MLP units per block) and times:"
cat "$OUT/shapes.txt"
# The search graphs (one scale) timed side by side in one interleaved run: the ratios hold
# on a shared machine where separate runs drift.
echo
echo "Search graphs side by side (tract, 1 thread, 200 interleaved runs, one search scale):"
graphs=(models/siamese-tracker models/siamese-tracker-p25 models/siamese-tracker-p10)
for model in $MODELS; do
  graphs+=("models/$model")
  for d in "$OUT/$model"-learned-* "$OUT/$model-heads-0.5"; do
    [ -f "$d/search.onnx" ] && graphs+=("$d")
  done
done
files=()
for g in "${graphs[@]}"; do files+=("$g/search.onnx"); done
"$ES" bench "${files[@]}" --input-shape search=1,3,127,127 --runs 200 --threads 1 2>&1 |
  sed -n '/side by side/,$p' | tail -n +2 | paste -d' ' <(printf '%s\n' "${graphs[@]}") -
