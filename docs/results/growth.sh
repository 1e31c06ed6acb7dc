#!/usr/bin/env bash
# Growth study (docs/results/growth.md): the zoo's ViT recipe grown from half width under a
# parameter budget against the widest uniformly scaled ViT within the same budget, same
# schedule and epochs, on MNIST and Animal-MNIST, for each seed; then the two MNIST models of
# the first seed timed side by side on tract.
#   bash docs/results/growth.sh OUT   (BUDGET, EPOCHS, INTERVAL, K, BATCHES, SEEDS, THREADS)
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
mkdir -p "$out"
for seed in $seeds; do
  for data in mnist animal-mnist; do
    recipe="$out/vit-tiny-$data-s$seed.toml"
    sed -e "s/^spec = .*/spec = \"$data\"/" -e "s/^name = .*/name = \"vit-tiny-$data\"/" \
      -e "s/^seed = .*/seed = $seed/" "$here/models/recipes/vit-tiny-mnist.toml" > "$recipe"
    common=(--budget "params=$budget" --epochs "$epochs" --interval "$interval"
            --max-batches "$batches" --threads "$threads")
    [ -f "$out/grown-$data-s$seed.onnx" ] || "$bin" grow "$recipe" "${common[@]}" \
      --grow-per-step "$k" -o "$out/grown-$data-s$seed.onnx" | tee "$out/grown-$data-s$seed.txt"
    [ -f "$out/uniform-$data-s$seed.onnx" ] || "$bin" grow "$recipe" "${common[@]}" --uniform \
      -o "$out/uniform-$data-s$seed.onnx" | tee "$out/uniform-$data-s$seed.txt"
  done
done
first=$(echo $seeds | cut -d' ' -f1)
"$bin" bench "$out/grown-mnist-s$first.onnx" "$out/uniform-mnist-s$first.onnx" --runs 500 \
  --input-shape x=1,1,28,28 --json "$out/bench.json" | tee "$out/bench.txt"
