#!/usr/bin/env bash
# Reproduces every number of docs/results/lowrank.md: one command.
#
#   bash docs/results/lowrank.sh [OUT_DIR]      (default: lowrank-results/)
#
# PP-OCR cls (real text crops, ppocr-text) at budgets 0.75/0.5/0.25 in weight and feature space,
# compression time and peak RSS vs model size (PP-OCR cls, PP-OCRv4 det, and the zoo models),
# int8/fp16 on PP-OCR cls, and — once the zoo exists (models/mnist-cnn.onnx,
# models/vit-tiny-mnist.onnx) — MNIST accuracy of both methods at equal budgets and the ViT's
# spectrum analysis. Missing zoo models are skipped with a note. Prints markdown tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-lowrank-results}
mkdir -p "$OUT"
[[ -n ${NO_BUILD:-} ]] || cargo build --release -p edgeslim >&2
ES=${ES:-target/release/edgeslim}
"$ES" assets fetch >&2
CACHE=${EDGESLIM_HOME:-$HOME/.cache/edgeslim}
CLS=$CACHE/models/ch_ppocr_mobile_v2.0_cls_infer.onnx
DET=$CACHE/models/ch_PP-OCRv4_det_infer.onnx
RUNS=${RUNS:-50}
# Calibration samples for the feature method (sequential calibration runs the graph prefix of
# every layer over all of them; 256 PP-OCR crops are 256 × 24 × 96 channel vectors per conv).
NCAL=${NCAL:-256}

row() { # model label json
  jq -r --arg m "$1" --arg l "$2" '
    def pct: if . == null then "—" else (. * 1000 | round / 10 | tostring) + "%" end;
    def f3: if . == null then "—" else (. * 1000 | round / 1000 | tostring) end;
    "| \($m) | \($l) | \(.layer_params_before) → \(.layer_params_after) | \(.before.params) → \(.after.params) | \(.before.macs) → \(.after.macs) | \(.fidelity.top1_agreement | pct) | \(.fidelity.mean_cosine | f3) | \(.fidelity.accuracy_reference | pct) → \(.fidelity.accuracy | pct) | \(.before.latency_p50_ms | f3) → \(.after.latency_p50_ms | f3) | \(.compress_seconds | f3) | \((.peak_rss_bytes // 0) / 1048576 | round) |"' "$3"
}
header() {
  echo "| model | method, budget | decomposed-layer params | model params | MACs | top-1 agreement | mean cosine | accuracy before → after | tract p50 ms before → after | compress s | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
}

lowrank() { # name model calib shape-args...
  local name=$1 model=$2 calib=$3; shift 3
  for method in weight feature; do
    for b in 0.75 0.5 0.25; do
      local o="$OUT/$name-$method-$b"
      "$ES" compress lowrank "$model" "$@" --method $method --budget $b --calib "$calib" \
        --calib-samples "$NCAL" -o "$o.onnx" --report "$o" --bench-runs "$RUNS" >&2
      row "$name" "$method $b" "$o/report.json"
    done
  done
}

echo "## PP-OCR cls, ppocr-text held out"
header
lowrank ppocr-cls "$CLS" ppocr-text --input-shape x=1,3,48,192
"$ES" analyze "$CLS" --input-shape x=1,3,48,192 --calib ppocr-text --report "$OUT/ppocr-cls-analysis" >&2

echo
echo "## Compression time and peak RSS vs model size (weight space needs no data; feature space calibrates)"
echo "| model | file MB | method | samples | compress s | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
size() { du -m "$1" | cut -f1; }
for m in weight feature; do
  o="$OUT/ppocr-cls-$m-0.5/report.json"
  jq -r --arg s "$(stat -c %s "$CLS")" --arg m $m '"| ppocr-cls | \($s | tonumber / 1e6 * 100 | round / 100) | \($m) | \(.calib_samples) | \(.compress_seconds * 10 | round / 10) | \(.peak_rss_bytes / 1048576 | round) |"' "$o"
done
# The detector at 640×640, calibrated on scikit-image photographs.
mkdir -p "$OUT/photos"
for f in astronaut.png coffee.png chelsea.png rocket.jpg motorcycle_left.png motorcycle_right.png camera.png page.png text.png coins.png; do
  cp "$CACHE/images/$f" "$OUT/photos/" 2>/dev/null || true
done
for m in weight feature; do
  o="$OUT/ppocr-det-$m-0.5"
  "$ES" compress lowrank "$DET" --input-shape x=1,3,640,640 --method $m --budget 0.5 \
    --calib "images:$OUT/photos" -o "$o.onnx" --report "$o" --bench-runs 5 >&2
  jq -r --arg s "$(stat -c %s "$DET")" --arg m $m '"| ppocr-det | \($s | tonumber / 1e6 * 100 | round / 100) | \($m) | \(.calib_samples) | \(.compress_seconds * 10 | round / 10) | \(.peak_rss_bytes / 1048576 | round) |"' "$o/report.json"
done

echo
echo "## int8 / fp16 on PP-OCR cls (held-out ppocr-text)"
echo "| variant | file bytes | top-1 agreement | mean cosine | tract vs ORT max diff | tract p50 ms before → after | tract plan |"
echo "|---|---|---|---|---|---|---|"
q() { # label args...
  local l=$1; shift
  "$ES" compress quantize "$CLS" --input-shape x=1,3,48,192 --calib ppocr-text "$@" \
    -o "$OUT/cls-$l.onnx" --report "$OUT/q-$l" --bench-runs "$RUNS" >&2
  jq -r --arg l "$l" '"| \($l) | \(.before.file_bytes) → \(.after.file_bytes) | \(.fidelity.top1_agreement * 1000 | round / 10)% | \(.fidelity.mean_cosine * 100000 | round / 100000) | \(.engines.max_abs_diff) | \(.before.latency_p50_ms * 1000 | round / 1000) → \(.after.latency_p50_ms * 1000 | round / 1000) | \(.plan_after.verdict) |"' "$OUT/q-$l/report.json"
}
q fp16 --fp16
q int8-minmax --int8 --per-channel --method minmax
q int8-percentile --int8 --per-channel --method percentile
q int8-entropy --int8 --per-channel --method entropy
q int8-tensor --int8 --method minmax
q int8-minmax-7bit --int8 --per-channel --reduce-range --method minmax

echo
echo "## Zoo (MNIST held-out 1000): no fine-tuning, then a 2-epoch fine-tune"
echo "| model | method, budget | decomposed-layer params | accuracy, no fine-tuning | top-1 agreement | accuracy after fine-tune |"
echo "|---|---|---|---|---|---|"
for z in ${ZOO:-mnist-cnn vit-tiny-mnist}; do
  if [[ ! -f models/$z.onnx ]]; then
    echo "| $z | skipped: models/$z.onnx does not exist | | | | |"
    continue
  fi
  for method in weight feature; do
    for b in 0.75 0.5 0.25; do
      o="$OUT/$z-$method-$b"
      "$ES" compress lowrank "models/$z.onnx" --method $method --budget $b --calib mnist \
        --calib-samples 1000 -o "$o.onnx" --report "$o" --bench-runs 0 >&2
      "$ES" finetune "$o.onnx" --data mnist --epochs 2 --seed 0 -o "$o-ft.onnx" --json "$o-ft.json" >&2
      "$ES" eval "$o-ft.onnx" --task classify --data mnist --json "$o-ft-eval.json" >&2
      jq -r --arg z "$z" --arg l "$method $b" --slurpfile ft "$o-ft-eval.json" '
        "| \($z) | \($l) | \(.layer_params_before) → \(.layer_params_after) | \(.fidelity.accuracy * 1000 | round / 10)% | \(.fidelity.top1_agreement * 1000 | round / 10)% | \($ft[0].accuracy * 1000 | round / 10)% |"' "$o/report.json"
    done
  done
done
if [[ -f models/vit-tiny-mnist.onnx ]]; then
  "$ES" analyze models/vit-tiny-mnist.onnx --calib mnist --report "$OUT/vit-analysis" >&2
fi
# Surgical rank search on mnist-cnn: tolerance 1 point on the search split, held-out report.
if [[ -f models/mnist-cnn.onnx ]]; then
  "$ES" compress lowrank models/mnist-cnn.onnx --method feature --calib mnist --search \
    --tolerance 0.01 -o "$OUT/mnist-cnn-search.onnx" --report "$OUT/mnist-cnn-search" --bench-runs 0 >&2
fi
