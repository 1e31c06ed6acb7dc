#!/usr/bin/env bash
# Markdown tables of the studies docs/results/study.sh wrote (the tables of study.md).
#
#   bash docs/results/study-tables.sh [OUT_DIR]      (default: study-results/)
set -euo pipefail
OUT=${1:-study-results}
for dir in "$OUT"/*/; do
  [[ -f $dir/study.json ]] || continue
  echo "### $(basename "$dir")"
  echo
  jq -r '
    def f2: if . == null then "—" else (. * 100 | round / 100 | tostring) end;
    def f3: if . == null then "—" else (. * 1000 | round / 1000 | tostring) end;
    def pct: if . == null then null else . * 100 end;
    def pts($m): if $m == "accuracy" then (.accuracy | pct)
      elif $m == "agreement" then .agreement * 100
      elif $m == "box-f1" then (.box_f1 | pct)
      elif $m == "auc" then (.auc | pct)
      else (.cosine | pct) end;
    .metric as $m |
    "\(.held_out_samples) held-out samples of `\(.data)`; \(.threads) thread(s) (target \(.target)); \(.bench_runs) interleaved runs per model; recovery \(.recover)\(if .recover != "none" then ", \(.recover_epochs) epochs" else "" end); budgets in \(.budget_by // "params").",
    "",
    "| variant | params | MACs | file KiB | tract p50 ms | p90 ms | × tract | × ORT | \($m) % | drop | recovery | Pareto |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|:-:|",
    "| original, tract | \(.reference.params) | \(.reference.macs) | \(.reference.file_bytes/1024|round) | \(.reference.tract.p50_ms|f3) | \(.reference.tract.p90_ms|f3) | 1 | \(if .reference.ort then (.reference.ort.p50_ms / .reference.tract.p50_ms | f2) else "—" end) | \(.reference.quality|pts($m)|f2) | | | |",
    "| original, ONNX Runtime | | | | \(.reference.ort.p50_ms|f3) | \(.reference.ort.p90_ms|f3) | \(if .reference.ort then (.reference.tract.p50_ms / .reference.ort.p50_ms | f2) else "—" end) | 1 | | | | |",
    (.rows[] | "| \(.id) | \(.params) | \(.macs) | \(.file_bytes/1024|round) | \(.latency.p50_ms|f3) | \(.latency.p90_ms|f3) | \(.speedup_vs_tract|f2) | \(.speedup_vs_ort|f2) | \(.quality|pts($m)|f2) | \(.drop_points|f2) | \(if .recovery then "\(.recovery.mode) \(.quality_compressed|pts($m)|f2) → \(.quality|pts($m)|f2), \(.recovery.seconds|round) s" elif (.notes|map(select(startswith("not recovered")))|length) > 0 then (.notes|map(select(startswith("not recovered")))|first) else "" end) | \(if .pareto then "●" else "" end) |"),
    (.skipped[]? | "| \(.id) | not built: \(.reason) | | | | | | | | | | |")
  ' "$dir/study.json"
  echo
done
