#!/usr/bin/env bash
# Growth study (docs/results/growth.md): the zoo's ViT recipe grown from half width under a
# parameter budget against the widest uniformly scaled ViT within the same budget, same
# schedule and epochs, on MNIST and Animal-MNIST; then both timed side by side on tract.
#   bash docs/results/growth.sh OUT     (BUDGET, EPOCHS, INTERVAL, K, BATCHES, THREADS)
set -euo pipefail
out=${1:?usage: growth.sh OUT}
bin=${EDGESLIM:-target/release/edgeslim}
here=$(cd "$(dirname "$0")/../.." && pwd)
budget=${BUDGET:-85k}
epochs=${EPOCHS:-6}
interval=${INTERVAL:-1}
k=${K:-16}
batches=${BATCHES:-200}    # batches of 64 per epoch
threads=${THREADS:-0}
mkdir -p "$out"
for data in mnist animal-mnist; do
  recipe="$out/vit-tiny-$data.toml"
  sed -e "s/^spec = .*/spec = \"$data\"/" -e "s/^name = .*/name = \"vit-tiny-$data\"/" \
    "$here/models/recipes/vit-tiny-mnist.toml" > "$recipe"
  common=(--budget "params=$budget" --epochs "$epochs" --interval "$interval" --max-batches "$batches" --threads "$threads")
  [ -f "$out/grown-$data.onnx" ] || "$bin" grow "$recipe" "${common[@]}" --grow-per-step "$k" \
    -o "$out/grown-$data.onnx" | tee "$out/grown-$data.txt"
  [ -f "$out/uniform-$data.onnx" ] || "$bin" grow "$recipe" "${common[@]}" --uniform \
    -o "$out/uniform-$data.onnx" | tee "$out/uniform-$data.txt"
done
"$bin" bench "$out/grown-mnist.onnx" "$out/uniform-mnist.onnx" --runs 500 \
  --input-shape x=1,1,28,28 --json "$out/bench.json" | tee "$out/bench.txt"
