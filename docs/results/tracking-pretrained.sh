#!/usr/bin/env bash
# Reproduces the table "A tracker on a pretrained backbone" of docs/results/tracking.md.
#
#   bash docs/results/tracking-pretrained.sh [OUT_DIR]      (default: tracking-pretrained/)
#
# 1. the benchmark set (6 x 100 frames, seed 7);
# 2. the frozen-backbone variant of models/recipes/siamese-mnv2.toml trained into OUT (~5 min
#    on 2 cores; the committed models/siamese-mnv2 is the fine-tuned one, ~13 min to retrain);
# 3. today's tracker, both pretrained-backbone trackers, and the fine-tuned one pruned as a pair
#    to 50/25/10/1 % of its parameters (L1 over the trunk's dependency groups), each as pruned
#    and after fine-tuning (EPOCHS, default 5; ~4-8 min per level on 2 cores), evaluated by the
#    board runtime's tracking loop (tract, 1 thread).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-tracking-pretrained}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim -p edgeslim-runtime >&2
ES=${ES:-$PWD/target/release/edgeslim}
RT=${RT:-$PWD/target/release/edgeslim-rt}
"$ES" assets fetch >&2
DATA=$OUT/bench
[ -d "$DATA" ] || "$ES" data tracking -o "$DATA" --sequences 6 --frames 100 --seed 7 >&2

FROZEN=$OUT/siamese-mnv2-frozen
if [ ! -f "$FROZEN/search.onnx" ]; then
  sed -e 's/^train_backbone = true/train_backbone = false/' \
      -e "s|^output = .*|output = \"$FROZEN\"|" \
      models/recipes/siamese-mnv2.toml > "$OUT/frozen.toml"
  "$ES" train "$OUT/frozen.toml" --quiet >&2
fi

row() { # label dir
  "$RT" track "$2" --eval "$DATA" --json "$2.eval.json" --threads 1 --quiet >&2
  jq -r --arg l "$1" '
    def r3: . * 1000 | round / 1000 | tostring;
    "| \($l) | \(.overall.auc | r3) | \(.overall.precision_20px | r3) | \(.overall.average_overlap | r3) | \(.overall.success_rate_50 | r3) | \(.fps * 10 | round / 10) | \(.mean_search_ms * 100 | round / 100) |"' "$2.eval.json"
}

echo "| tracker | AUC | P@20 | AO | SR0.5 | fps (loop) | search ms/frame |"
echo "|---|---|---|---|---|---|---|"
cp -r models/siamese-tracker "$OUT/own"
row "own 4-layer backbone (models/siamese-tracker)" "$OUT/own"
row "MobileNetV2 block 3, frozen" "$FROZEN"
cp -r models/siamese-mnv2 "$OUT/mnv2"
row "MobileNetV2 block 3, fine-tuned (models/siamese-mnv2)" "$OUT/mnv2"
# The pair pruner (both graphs together, the trunk's dependency groups, the correlation
# channels on both sides) along the own tracker's curve, each level as pruned and after
# fine-tuning with the tracker's own recipe (from its card; EPOCHS epochs, lr 1e-3).
EPOCHS=${EPOCHS:-5}
for keep in 0.5 0.25 0.1 0.01; do
  d=$OUT/mnv2-k$keep
  "$ES" compress prune "$OUT/mnv2" --keep-params "$keep" --criterion l1 -o "$d" \
    --report "$d-report" --runs 20 >&2
  params=$(jq -r '"\(.params_after) (\(.params_kept * 1000 | round / 10) %), trunk \(.trunk_widths_after | map(tostring) | join("/")), neck \(.widths_after[3])"' "$d-report/report.json")
  row "fine-tuned, pruned to $keep: $params, no recovery" "$d"
  f=$OUT/mnv2-k$keep-ft
  [ -f "$f/search.onnx" ] || "$ES" compress prune "$OUT/mnv2" --keep-params "$keep" --criterion l1 \
    -o "$f" --finetune tracking:1 --epochs "$EPOCHS" --report "$f-report" --runs 0 >&2
  row "fine-tuned, pruned to $keep, fine-tuned $EPOCHS epochs" "$f"
done
