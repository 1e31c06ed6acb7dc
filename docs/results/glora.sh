#!/usr/bin/env bash
# docs/results/glora.md: transfer with a linear probe, full fine-tuning, LoRA and GLoRA
# (supports searched), all-data and few-shot (K images per class of the training split,
# drawn with the seed), on the fixed held-out split of the task (20 % of it, seed 0; the
# search scores on samples out of the training split, or the shots themselves). Every method
# keeps its last epoch; the reported accuracy is the written (merged) model's.
#
#   bash docs/results/glora.sh [OUT_DIR]         (default: glora/)
#
# TASKS (default "zoo-vit"): zoo-vit = models/vit-tiny-mnist.onnx (MNIST) → Animal-MNIST;
# dinov2-animals = DINOv2 ViT-S/14 at 112² with the linear-probe head (`zoo import
# dinov2-s14 --head animal-mnist`, ~16 min; the head reset to random weights) → Animal-MNIST,
# 300 held-out images, 8 epochs, a smaller search; ~5-20 min per few-shot run on 2 cores;
# dinov2-mnist = the same backbone → MNIST (head at zero, reset); effnet-animals =
# EfficientNet-Lite0 (ImageNet) at 112², its ImageNet head replaced, → Animal-MNIST.
# Learning rates per task and method (one each, no sweep): a pretrained ViT-S wants ~10× less
# than the small zoo ViT for the multiplicative GLoRA terms and ~60× less for full fine-tuning.
# SHOTS (default "1 2 4 8 16 all"), METHODS (default "linear lora glora full"). Writes
# OUT/TASK.html per task (`edgeslim report` on the runs: the accuracy / trained-values chart).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-glora}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim >&2
ES=${ES:-target/release/edgeslim}
"$ES" assets fetch >&2
TASKS=${TASKS:-zoo-vit}
SHOTS=${SHOTS:-1 2 4 8 16 all}
METHODS=${METHODS:-linear lora glora full}

echo "| task | shots per class | method | trained values | accuracy (held-out, merged) | training s | search |"
echo "|---|---|---|---|---|---|---|"
for task in $TASKS; do
  # Learning rates: linear probe, LoRA, GLoRA, full.
  lrs=(3e-3 3e-3 3e-3 1e-3)
  small=(--held-out 300 --search-samples 100 --batch-size 16 --reset-head)
  case $task in
    zoo-vit) model=models/vit-tiny-mnist.onnx; data=animal-mnist; extra=(); fs_epochs=15
      search=(--search-generations 10 --population 20) ;;
    dinov2-animals|dinov2-mnist)
      data=${task#dinov2-}; data=${data/animals/animal-mnist}
      [ -f "$OUT/dino/classifier-$data.onnx" ] ||
        "$ES" zoo import dinov2-s14 --size 112 --head "$data" -o "$OUT/dino" --runs 0 \
          --probe-epochs 0 >&2
      model=$OUT/dino/classifier-$data.onnx
      extra=("${small[@]}"); fs_epochs=8; lrs=(3e-3 3e-3 3e-4 5e-5)
      search=(--search-generations 5 --population 10) ;;
    effnet-animals)
      data=animal-mnist
      [ -f "$OUT/effnet/classifier-$data.onnx" ] ||
        "$ES" zoo import efficientnet-lite0 --size 112 --head "$data" -o "$OUT/effnet" \
          --runs 0 --probe-epochs 0 >&2
      model=$OUT/effnet/classifier-$data.onnx
      extra=("${small[@]}"); fs_epochs=8; lrs=(3e-3 3e-3 1e-3 3e-4)
      search=(--search-generations 5 --population 10) ;;
    *) echo "unknown task $task" >&2; exit 1 ;;
  esac
  for shots in $SHOTS; do
    if [ "$shots" = all ]; then sflag=(); epochs=5; else sflag=(--shots "$shots"); epochs=$fs_epochs; fi
    for method in $METHODS; do
      case $method in
        linear) lr=${lrs[0]}; mflag=(--method linear) ;;
        lora) lr=${lrs[1]}; mflag=(--method lora) ;;
        glora) lr=${lrs[2]}; mflag=(--method glora "${search[@]}") ;;
        full) lr=${lrs[3]}; mflag=(--method full) ;;
        *) echo "unknown method $method" >&2; exit 1 ;;
      esac
      j=$OUT/$task-$shots-$method.json
      [ -f "$j" ] || "$ES" adapt "$model" --data "$data" "${sflag[@]}" "${mflag[@]}" \
        --epochs "$epochs" --lr "$lr" "${extra[@]}" -o "$OUT/$task-$shots-$method.onnx" \
        --json "$j" --quiet >&2
      jq -r --arg t "$task" --arg k "$shots" '
        "| \($t) | \($k) | \(.method) | \(.trainable_params) | \(.merged.accuracy * 1000 | round / 10) % | \(.train_seconds | round) | \(if .search then "\(.search.evaluations) configurations, supernet \(.search.supernet_seconds | round) s, search \(.search.search_seconds | round) s" else "—" end) |"' "$j"
    done
  done
done
# One comparison page per task: held-out accuracy against trained values, per method.
for task in $TASKS; do
  "$ES" report "$OUT/$task"-*.json -o "$OUT/$task.html" --title "GLoRA transfer: $task" >&2
done
