#!/usr/bin/env bash
# Reproduces every number of docs/results/pruning.md: one command.
#
#   bash docs/results/pruning.sh [OUT_DIR]      (default: pruning-results/)
#   PART=ppocr|zoo bash docs/results/pruning.sh  (one part only)
#
# PP-OCR cls (real text crops, ppocr-text: accuracy on held-out lines) and PP-OCRv4 det (a real
# page) at ratios 0.25 / 0.5 / 0.75, and the zoo CNN (models/mnist-cnn/model.onnx, MNIST held-out
# accuracy; also fine-tuned with --finetune mnist) and the zoo ViT (models/vit-tiny-mnist.onnx: attention
# heads and MLP units). Every row: params, MACs, tract latency of both models measured side
# by side in one process (1 thread, interleaved runs), fidelity. Prints markdown tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-pruning-results}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim >&2
ES=target/release/edgeslim
"$ES" assets fetch >&2
CACHE=${EDGESLIM_HOME:-$HOME/.cache/edgeslim}
CLS=$CACHE/models/ch_ppocr_mobile_v2.0_cls_infer.onnx
DET=$CACHE/models/ch_PP-OCRv4_det_infer.onnx
PAGE=$CACHE/images/page.png
RUNS=${RUNS:-20}

row() { # model label json
  jq -r --arg m "$1" --arg l "$2" '
    def pct: if . == null then "—" else (. * 1000 | round / 10 | tostring) + "%" end;
    def f2: if . == null then "—" else (. * 100 | round / 100 | tostring) end;
    def f3: if . == null then "—" else (. * 1000 | round / 1000 | tostring) end;
    def m: (. / 1e6 * 10 | round / 10 | tostring) + "M";
    "| \($m) | \($l) | \(.totals.params_before) → \(.totals.params_after) (\(.totals.params_after / .totals.params_before | pct)) | \(.totals.macs_before | m) → \(.totals.macs_after | m) (\(.totals.macs_after / .totals.macs_before | pct)) | \(.latency.before_ms | f2) → \(.latency.after_ms | f2) | **\(.latency.speedup | f2)×** | \(.fidelity.outputs[0].cosine_mean | f3) | \(.fidelity.outputs[0].top1_agreement | pct) | \(.fidelity.accuracy_before | pct) → \(.fidelity.accuracy_after | pct) | \(if .recovery == null then "—" else "\(.recovery.epochs) ep\(if .recovery.teacher then ", teacher" else "" end)" end) |"' "$3"
}
header() {
  echo "| model | ratio, criterion | params | MACs | tract ms before → after | speed-up | output cosine | top-1 agreement | accuracy before → after | fine-tuned |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
}

prune() { # name model label ratio criterion args...
  local name=$1 model=$2 label=$3 ratio=$4 crit=$5; shift 5
  local o="$OUT/$name-$crit-$ratio${TAG:-}"
  "$ES" compress prune "$model" --ratio "$ratio" --criterion "$crit" "$@" --runs "$RUNS" \
    -o "$o.onnx" --report "$o" >&2
  row "$label" "${LABEL:-$ratio, $crit}" "$o/report.json"
}

PART=${PART:-all}
if [ "$PART" != zoo ]; then
echo "### PP-OCR cls (48×192, ppocr-text: held-out lines, 0°/180° labels)"
echo
header
for r in 0.25 0.5 0.75; do
  for c in l1 activation; do
    prune cls "$CLS" "PP-OCR cls" $r $c --input-shape x=1,3,48,192 --calib ppocr-text
  done
done
LABEL="0.5, l1, --global --round-to 8" TAG=-global \
  prune cls "$CLS" "PP-OCR cls" 0.5 l1 --input-shape x=1,3,48,192 --calib ppocr-text --global --round-to 8
echo
echo "### PP-OCRv4 det (640×640, page.png)"
echo
header
for r in 0.25 0.5 0.75; do
  prune det "$DET" "PP-OCRv4 det" $r l1 --input-shape x=1,3,640,640 --calib "$PAGE" --bgr
done
echo
fi
if [ "$PART" != ppocr ]; then
  echo "### Zoo CNN (mnist-cnn, MNIST held-out digits)"
  echo
  header
  ZOO=models/mnist-cnn.onnx
  for r in 0.25 0.5 0.75; do
    for c in l1 bn; do
      prune mnist-cnn "$ZOO" "mnist-cnn" $r $c --calib mnist
    done
    TAG=-ft prune mnist-cnn "$ZOO" "mnist-cnn" $r l1 --calib mnist --finetune mnist --epochs 2
  done
  TAG=-ft prune mnist-cnn "$ZOO" "mnist-cnn" 0.75 l1 --calib mnist --finetune mnist --epochs 2 --teacher
  echo
  echo "### Zoo ViT (vit-tiny-mnist: 2 heads per block, MLP hidden units; MNIST held-out digits)"
  echo
  header
  VIT=models/vit-tiny-mnist.onnx
  for r in 0.25 0.5; do
    prune vit "$VIT" "vit-tiny-mnist" $r l1 --calib mnist
    TAG=-ft prune vit "$VIT" "vit-tiny-mnist" $r l1 --calib mnist --finetune mnist --epochs 2
  done
fi
