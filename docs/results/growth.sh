#!/usr/bin/env bash
# Growth study (docs/results/growth.md): the zoo's ViT recipe grown from half width under a
# parameter budget (MLP neurons and QKV units; and MLP neurons only, --mlp-only) against the
# widest uniformly scaled ViT within the same budget, same schedule and epochs, on MNIST and
# Animal-MNIST, for each seed; then the three MNIST models of the first seed timed side by
# side on tract. Set JOBS=2 to run two trainings at a time.
#   bash docs/results/growth.sh OUT   (BUDGET, EPOCHS, INTERVAL, K, BATCHES, SEEDS, THREADS,
#                                      DATA, SIZE, PATCH, SCORE_IMAGES, MACS)
# MACS=1 adds growth ranked per added MAC (--rank-by macs) as a fourth model.
# DINOv2-sized inputs (224 × 224 in 14 × 14 patches: 256 tokens, the digits upsampled):
#   SIZE=224 PATCH=14 BUDGET=115k DATA=mnist SEEDS=0 EPOCHS=6 INTERVAL=1 K=16 BATCHES=32 \
#     SCORE_IMAGES=64 bash docs/results/growth.sh OUT
set -euo pipefail
out=${1:?usage: growth.sh OUT}
bin=${EDGESLIM:-target/release/edgeslim}
here=$(cd "$(dirname "$0")/../.." && pwd)
budget=${BUDGET:-90k}
epochs=${EPOCHS:-12}
interval=${INTERVAL:-2}
k=${K:-24}
batches=${BATCHES:-400}    # batches of 64 per epoch at most
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-0}
jobs=${JOBS:-1}
datasets=${DATA:-mnist animal-mnist}
size=${SIZE:-28}
patch=${PATCH:-7}
score=${SCORE_IMAGES:-256}
mkdir -p "$out"
# One training, unless its model is there already; at most $jobs at a time.
train() {
  local name=$1; shift
  [ -f "$out/$name.onnx" ] && return 0
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  "$bin" grow "$@" -o "$out/$name.onnx" > "$out/$name.txt" 2>&1 &
}
for seed in $seeds; do
  for data in $datasets; do
    recipe="$out/vit-tiny-$data-s$seed.toml"
    sed -e "s/^spec = .*/spec = \"$data\"/" -e "s/^name = .*/name = \"vit-tiny-$data\"/" \
      -e "s/^seed = .*/seed = $seed/" -e "s/^patch = .*/patch = $patch\nimage_size = $size/" \
      -e "s/^augment_shift = .*/&\nimage_size = $size/" \
      "$here/models/recipes/vit-tiny-mnist.toml" > "$recipe"
    common=(--budget "params=$budget" --epochs "$epochs" --interval "$interval"
            --max-batches "$batches" --score-images "$score" --threads "$threads")
    train "grown-$data-s$seed" "$recipe" "${common[@]}" --grow-per-step "$k"
    train "mlp-only-$data-s$seed" "$recipe" "${common[@]}" --grow-per-step "$k" --mlp-only
    train "uniform-$data-s$seed" "$recipe" "${common[@]}" --uniform
    if [ "${MACS:-0}" = 1 ]; then
      train "grown-macs-$data-s$seed" "$recipe" "${common[@]}" --grow-per-step "$k" --rank-by macs
    fi
  done
done
wait
tail -n 2 "$out"/*.txt
first=$(echo $seeds | cut -d' ' -f1)
d=$(echo $datasets | cut -d' ' -f1)
models=("$out/grown-$d-s$first.onnx" "$out/mlp-only-$d-s$first.onnx" "$out/uniform-$d-s$first.onnx")
[ "${MACS:-0}" = 1 ] && models+=("$out/grown-macs-$d-s$first.onnx")
"$bin" bench "${models[@]}" --runs "${RUNS:-500}" \
  --input-shape "x=1,1,$size,$size" --json "$out/bench.json" | tee "$out/bench.txt"
