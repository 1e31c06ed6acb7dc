#!/usr/bin/env bash
# The tracker study of docs/results/pruning.md: the zoo Siamese tracker (models/siamese-tracker,
# template.onnx + search.onnx) pruned as a pair to 50 %, 25 %, 10 % and 1 % of its parameters
# (`--keep-params`, every layer keeps the same share of its channels: layer-wise thresholds;
# the correlation kernel's channels are pruned on both sides), each evaluated as pruned and
# after fine-tuning on generated tracking pairs (the recipe the tracker was trained with,
# 5 epochs, lr 1e-3), on the tracking benchmark set of docs/results/tracking.md.
# The fine-tuned trackers are the zoo's models/siamese-tracker-pNN (cards written by the
# trainer); the pruned-only pairs go to OUT_DIR.
#
#   bash docs/results/pruning-tracker.sh [OUT_DIR]      (default: pruning-tracker/)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-pruning-tracker}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim >&2
ES=target/release/edgeslim
TRK=models/siamese-tracker
DATA="$OUT/bench"
[ -d "$DATA" ] || "$ES" data tracking -o "$DATA" --sequences 6 --frames 100 --seed 7 >&2
RUNS=${RUNS:-100}
EPOCHS=${EPOCHS:-5}
CRITERION=${CRITERION:-bn}

row() { # name dir report.json eval.json [latency report.json]
  jq -r --arg n "$1" --slurpfile e "$4" --slurpfile l "${5:-$3}" '
    .latency = $l[0].latency |
    def f2: (. * 100 | round / 100 | tostring);
    def f3: (. * 1000 | round / 1000 | tostring);
    "| \($n) | \(.widths_after | map(tostring) | join("/")) | \(.params_after) (\(.params_kept * 1000 | round / 10)%) | \(.macs_per_search_scale_after / 1e6 | f2)M | \(.latency.before_ms | f2) → \(.latency.after_ms | f2) | \(.latency.speedup | f2)× | \($e[0].fps | f2) | \($e[0].overall.auc | f3) | \($e[0].overall.precision_20px | f3) |"' "$3"
}

echo "| tracker | channels | params (search graph) | MACs per search scale | tract ms search, original → pruned | speed-up | fps (whole loop, 1 thread) | AUC | P@20 |"
echo "|---|---|---|---|---|---|---|---|---|"
"$ES" eval "$TRK" --task track --data "$DATA" --json "$OUT/base.json" >&2
jq -r '"| original | 16/32/48/48 | 40369 (100%) | 29.77M | — | — | \(.fps * 100 | round / 100) | \(.overall.auc * 1000 | round / 1000) | \(.overall.precision_20px * 1000 | round / 1000) |"' "$OUT/base.json"
for keep in 0.5 0.25 0.1 0.01; do
  tag=$(printf 'p%02d' "$(awk -v k="$keep" 'BEGIN { printf "%d", k * 100 + 0.5 }')")
  d="$OUT/$tag"
  "$ES" compress prune "$TRK" --keep-params "$keep" --criterion "$CRITERION" -o "$d" \
    --report "$d/report" --runs "$RUNS" >&2
  "$ES" eval "$d" --task track --data "$DATA" --json "$d/eval.json" >&2
  row "$keep, pruned" "$d" "$d/report/report.json" "$d/eval.json"
  z="models/siamese-tracker-$tag"
  mkdir -p "$OUT/$tag-ft"
  # REUSE_ZOO=1: evaluate the committed fine-tuned trackers instead of training them again.
  if [ -z "${REUSE_ZOO:-}" ]; then
    "$ES" compress prune "$TRK" --keep-params "$keep" --criterion "$CRITERION" -o "$z" \
      --finetune tracking:1 --epochs "$EPOCHS" --report "$OUT/$tag-ft" --runs 2 >&2
  fi
  "$ES" eval "$z" --task track --data "$DATA" --json "$OUT/$tag-ft/eval.json" >&2
  # Same architecture as the pruned-only pair: its report (params, MACs, and the side-by-side
  # latency measured without a fine-tuning run around it) describes this row too.
  row "$keep, fine-tuned" "$z" "$d/report/report.json" "$OUT/$tag-ft/eval.json"
done
