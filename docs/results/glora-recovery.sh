#!/usr/bin/env bash
# docs/results/glora.md, "GLoRA as the recovery step": `edgeslim study` on the zoo CNN and the
# zoo ViT (MNIST, labelled) with the structural methods at three budgets, run without
# recovery, with full fine-tuning and with GLoRA adapters merged back (`--recover glora`), each
# recovery at two learning rates, on the same 2000 calibration digits, the same epochs and the
# same held-out split; prints one table per model: held-out accuracy after each recovery, the
# values GLoRA trained, and the seconds of each recovery at the better rate.
#
#   bash docs/results/glora-recovery.sh [OUT_DIR]      (default: glora-recovery/)
#
# MODELS (default "mnist-cnn vit-tiny-mnist"), METHODS, BUDGETS, EPOCHS (3). The rates are
# 1e-3 (the study's default) and 3e-3 for both recoveries.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-glora-recovery}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim >&2
ES=${ES:-target/release/edgeslim}
"$ES" assets fetch >&2
MODELS=${MODELS:-mnist-cnn vit-tiny-mnist}
METHODS=${METHODS:-prune,prune-global,lowrank-weight,lowrank-feature}
BUDGETS=${BUDGETS:-0.5,0.25,0.1}
EPOCHS=${EPOCHS:-3}
RUNS=(none finetune:1e-3 finetune:3e-3 glora:1e-3 glora:3e-3)

for m in $MODELS; do
  for run in "${RUNS[@]}"; do
    mode=${run%%:*}; lr=${run#*:}; [ "$mode" = none ] && lr=1e-3
    dir=$OUT/$m-${run/:/-}
    [ -f "$dir/study.json" ] || "$ES" study "models/$m.onnx" --data mnist --labels \
      --calib-samples 2000 --methods "$METHODS" --budgets "$BUDGETS" --recover "$mode" \
      --epochs "$EPOCHS" --lr "$lr" --runs 20 -o "$dir" --quiet >&2
  done
  echo "### $m"
  echo
  echo "| variant | params | no recovery | fine-tuning 1e-3 | fine-tuning 3e-3 | GLoRA 1e-3 | GLoRA 3e-3 | GLoRA values trained | s (fine-tuning, GLoRA; at 3e-3) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  jq -r -n --slurpfile a "$OUT/$m-none/study.json" \
    --slurpfile f1 "$OUT/$m-finetune-1e-3/study.json" --slurpfile f3 "$OUT/$m-finetune-3e-3/study.json" \
    --slurpfile g1 "$OUT/$m-glora-1e-3/study.json" --slurpfile g3 "$OUT/$m-glora-3e-3/study.json" '
    def pct: if . == null then "—" else "\(. * 1000 | round / 10) %" end;
    def by($s): [$s[0].rows[] | {key: .id, value: .}] | from_entries;
    (by($f1)) as $F1 | (by($f3)) as $F3 | (by($g1)) as $G1 | (by($g3)) as $G3 |
    $a[0].rows[] | .id as $id |
    "| \($id) | \(.params) | \(.quality.accuracy | pct) | \($F1[$id].quality.accuracy | pct) | \($F3[$id].quality.accuracy | pct) | \($G1[$id].quality.accuracy | pct) | \($G3[$id].quality.accuracy | pct) | \($G3[$id].recovery.trained_values // "—") | \($F3[$id].recovery.seconds // 0 | round), \($G3[$id].recovery.seconds // 0 | round) |"'
  echo
done
