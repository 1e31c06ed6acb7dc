#!/usr/bin/env bash
# Markdown tables of what docs/results/vit-slim.sh wrote.
#
#   bash docs/results/vit-slim-tables.sh [OUT_DIR]      (default: vit-slim-results/)
set -euo pipefail
OUT=${1:-vit-slim-results}
p50() { # bench json, model path → p50 ms
  jq -r --arg m "$2" '[.. | objects | select(.model?.path? == $m) | .latency.p50_ms * 1000 | round / 1000][0] // "—"' "$1"
}
echo "### Zoo ViT (MNIST), accuracy in tract on the held-out digits"
echo
echo "| model | params | MACs | accuracy % | p50 ms, 1 thread | p50 ms, 2 threads |"
echo "|---|---:|---:|---:|---:|---:|"
for e in "$OUT"/*.eval.json; do
  name=$(basename "$e" .eval.json)
  [[ $name == dino-* || $name == classifier-* ]] && continue
  m=$(jq -r .model "$e")
  params=$("${ES:-target/release/edgeslim}" -q inspect "$m" --json 2>/dev/null | jq -r '.total_params // "—"')
  macs=$("${ES:-target/release/edgeslim}" -q inspect "$m" --json 2>/dev/null | jq -r '.total_macs // "—"')
  acc=$(jq -r '.accuracy * 10000 | round / 100' "$e")
  echo "| $name | $params | $macs | $acc | $(p50 "$OUT/bench-1.json" "$m") | $(p50 "$OUT/bench-2.json" "$m") |"
done
echo
for j in "$OUT"/*.json; do
  [[ $(jq -r 'has("kept_fraction")' "$j" 2>/dev/null) == true ]] || continue
  jq -r --arg n "$(basename "$j" .json)" '"- \($n): \(.selection), params \(.params[0]) → \(.params[1]), MACs \(.macs[0]) → \(.macs[1]); accuracy original \(.accuracy.original*100|round) %, after search \(if .accuracy.after_search then (.accuracy.after_search*1000|round/10) else "—" end), sliced \(.accuracy.sliced*1000|round/10), retrained \(.accuracy.retrained*1000|round/10) (\(.accuracy.held_out_samples) held out); blocks \([.blocks[] | "\(.heads[1])×\(.head_dim[1])/\(.mlp_units[1] // "-")"] | join(", ")); search \(.search_seconds|round) s, retrain \(.retrain_seconds|round) s, peak RSS \((.peak_rss_bytes // 0)/1048576|round) MiB"' "$j"
done
