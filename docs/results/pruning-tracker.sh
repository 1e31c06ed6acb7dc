#!/usr/bin/env bash
# The tracker part of docs/results/pruning.md: the zoo Siamese tracker (models/siamese-tracker,
# template.onnx + search.onnx) pruned at several channel ratios, WITHOUT fine-tuning (the tracker
# trainer does not take a pruned model yet), evaluated with `edgeslim eval --task track` on
# generated OTB-layout sequences. Both graphs are pruned with the same ratio and criterion; the
# 48 backbone output channels are tied to the correlation kernel (a graph output of template.onnx
# and a graph input of search.onnx), so they are kept, and only internal channels move.
#
#   bash docs/results/pruning-tracker.sh [OUT_DIR]      (default: pruning-tracker/)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-pruning-tracker}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim >&2
ES=target/release/edgeslim
TRK=models/siamese-tracker
DATA="$OUT/sequences"
[ -d "$DATA" ] || "$ES" data tracking --out "$DATA" --sequences 4 --frames 60 --seed 7 >&2
RUNS=${RUNS:-20}

echo "| tracker | params (search graph) | MACs per search scale | tract ms search (before → after) | speed-up | AUC | P@20 | fps (whole loop) |"
echo "|---|---|---|---|---|---|---|---|"
"$ES" eval "$TRK" --task track --data "$DATA" --json "$OUT/base.json" >&2
jq -r '"| original | — | — | — | — | \(.overall.auc * 1000 | round / 1000) | \(.overall.precision_20px * 1000 | round / 1000) | \(.fps * 100 | round / 100) |"' "$OUT/base.json"
for r in 0.25 0.5 0.75 0.9; do
  d="$OUT/r$r"
  mkdir -p "$d"
  "$ES" compress prune "$TRK/template.onnx" --ratio "$r" -o "$d/template.onnx" >&2
  "$ES" compress prune "$TRK/search.onnx" --ratio "$r" --runs "$RUNS" -o "$d/search.onnx" --report "$d/report" >&2
  "$ES" eval "$d" --task track --data "$DATA" --json "$d/eval.json" >&2
  jq -r --arg r "$r" --slurpfile e "$d/eval.json" '
    def f2: (. * 100 | round / 100 | tostring);
    def f3: (. * 1000 | round / 1000 | tostring);
    "| ratio \($r) | \(.totals.params_before) → \(.totals.params_after) (\(.totals.params_after / .totals.params_before * 1000 | round / 10)%) | \(.totals.macs_before / 1e6 | f2)M → \(.totals.macs_after / 1e6 | f2)M | \(.latency.before_ms | f2) → \(.latency.after_ms | f2) | \(.latency.speedup | f2)× | \($e[0].overall.auc | f3) | \($e[0].overall.precision_20px | f3) | \($e[0].fps | f2) |"' "$d/report/prune.json"
done
