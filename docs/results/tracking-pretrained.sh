#!/usr/bin/env bash
# Reproduces the table "A tracker on a pretrained backbone" of docs/results/tracking.md.
#
#   bash docs/results/tracking-pretrained.sh [OUT_DIR]      (default: tracking-pretrained/)
#
# 1. the benchmark set (6 x 100 frames, seed 7);
# 2. the frozen-backbone variant of models/recipes/siamese-mnv2.toml trained into OUT (~5 min
#    on 2 cores; the committed models/siamese-mnv2 is the fine-tuned one, ~13 min to retrain);
# 3. today's tracker, both pretrained-backbone trackers, and the fine-tuned one pruned per graph
#    (L1, no recovery: the pair pruner with fine-tuning knows only the own 4-layer backbone),
#    evaluated by the board runtime's tracking loop (tract, 1 thread).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-tracking-pretrained}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim -p edgeslim-runtime >&2
ES=$PWD/target/release/edgeslim
RT=$PWD/target/release/edgeslim-rt
"$ES" assets fetch >&2
DATA=$OUT/bench
[ -d "$DATA" ] || "$ES" data tracking --out "$DATA" --sequences 6 --frames 100 --seed 7 >&2

FROZEN=$OUT/siamese-mnv2-frozen
if [ ! -f "$FROZEN/search.onnx" ]; then
  sed -e 's/^train_backbone = true/train_backbone = false/' \
      -e "s|^output = .*|output = \"$FROZEN\"|" \
      models/recipes/siamese-mnv2.toml > "$OUT/frozen.toml"
  "$ES" train "$OUT/frozen.toml" --quiet >&2
fi

row() { # label dir
  "$RT" track --model "$2" --eval "$DATA" --json "$2.eval.json" --threads 1 --quiet >&2
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
for r in 0.25 0.5 0.75; do
  d=$OUT/mnv2-p$r
  mkdir -p "$d"
  "$ES" compress prune "$OUT/mnv2/template.onnx" --ratio "$r" -o "$d/template.onnx" --runs 0 >&2
  "$ES" compress prune "$OUT/mnv2/search.onnx" --ratio "$r" --input-shape search=3,3,127,127 \
    --input-shape kernel=48,1,16,16 -o "$d/search.onnx" --report "$d/search-report" --runs 20 >&2
  params=$(jq -r '.summary.params_after / .summary.params_before * 1000 | round / 10' "$d/search-report/report.json")
  row "fine-tuned, pruned $r (L1, no recovery; search graph keeps $params % of its parameters)" "$d"
done
