#!/usr/bin/env bash
# Reproduces docs/results/study.md: `edgeslim study` on the zoo CNN, the zoo ViT, PP-OCR cls
# (with labels and fine-tuning, and without labels and label-free distillation), PP-OCRv4
# det (no labels, box F1 against the original's) and the zoo tracker pair (tracking AUC),
# each at the Raspberry Pi 4's thread count
# (capped at this machine's cores; the study says so). One folder per study under OUT_DIR, with
# index.html (table and Pareto chart) and study.json; prints each study's table.
#
#   bash docs/results/study.sh [OUT_DIR]      (default: study-results/)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-study-results}
mkdir -p "$OUT"
[[ -n ${NO_BUILD:-} ]] || cargo build --release -p edgeslim >&2
ES=${ES:-target/release/edgeslim}
"$ES" assets fetch >&2
CACHE=${EDGESLIM_HOME:-$HOME/.cache/edgeslim}
CLS=$CACHE/models/ch_ppocr_mobile_v2.0_cls_infer.onnx
DET=$CACHE/models/ch_PP-OCRv4_det_infer.onnx
RUNS=${RUNS:-40}
COMMON=(--target rpi4 --runs "$RUNS")

study() { # name, then the study's arguments
  local name=$1; shift
  echo "## $name" 
  "$ES" study "$@" "${COMMON[@]}" -o "$OUT/$name" 2> "$OUT/$name.log"
  echo
}

# The zoo (MNIST digits, labelled): fine-tuning recovery on 2000 training digits, 3 epochs.
study mnist-cnn models/mnist-cnn.onnx --data mnist --labels --recover finetune \
  --calib-samples 2000
study vit-tiny-mnist models/vit-tiny-mnist.onnx --data mnist --labels --recover finetune \
  --calib-samples 2000
# PP-OCR cls on real text lines of scikit-image's page.png (upright / rotated labels).
# The training engine runs PP-OCR cls at ~10 samples/s on 2 cores: recovery trains on 300
# crops for 3 epochs, and the study keeps to the methods that matter at two budgets.
CLS_STUDY=(--input-shape x=1,3,48,192 --data ppocr-text --calib-samples 300 --epochs 3
  --methods optimize,prune,prune-global,lowrank-feature,lowrank-search,fp16,int8,prune+int8
  --budgets 0.75,0.5)
study ppocr-cls "$CLS" "${CLS_STUDY[@]}" --labels --recover finetune
# The same without labels: quality is agreement with the original, recovery is distillation.
study ppocr-cls-unlabelled "$CLS" "${CLS_STUDY[@]}" --recover distill
# PP-OCRv4 det on windows of scikit-image's text photographs at 320×320 (ppocr-scenes): judged
# by the F1 of its text boxes against the original's (no labels); label-free recovery distils
# the original's probability maps (cross-entropy on the logits), 10 epochs at lr 3e-3.
study ppocr-det "$DET" --input-shape x=1,3,320,320 --data ppocr-scenes --metric box-f1 \
  --methods optimize,prune,fp16,int8,prune+int8 --budgets 0.75,0.5 --recover distill \
  --epochs 10 --lr 3e-3
# The zoo tracker pair: OTB success AUC on 6 generated sequences × 100 frames (seed 7, the
# benchmark of tracking.md); pruned pairs fine-tuned 3 epochs on generated tracking pairs. The
# search graph runs in about a millisecond: 300 interleaved runs per model.
echo "## siamese-tracker"
"$ES" study models/siamese-tracker --data tracking:7 --methods optimize,prune,fp16,prune+fp16 \
  --budgets 0.5,0.25,0.1 --recover finetune --epochs 3 --target rpi4 --runs 300 \
  -o "$OUT/siamese-tracker" 2> "$OUT/siamese-tracker.log"
