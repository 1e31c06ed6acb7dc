#!/usr/bin/env bash
# Thread scaling and frame pipelining of the deployed runtime (docs/results/speed.md).
# Usage: speed-threads.sh DIR OUT [THREADS...]
#   DIR holds edgeslim-rt, det.onnx (PP-OCRv4 det), cls.onnx (PP-OCR cls) and their
#   `edgeslim optimize` outputs det-opt.onnx / cls-opt.onnx; OUT receives one JSON report per run.
# Configurations are interleaved round by round so that machine noise hits all of them alike.
set -euo pipefail
dir=$1; out=$2; shift 2

[ $# -gt 0 ] && threads=("$@") || threads=(1 2)
rt=$dir/edgeslim-rt
mkdir -p "$out"
nproc > "$out/nproc.txt"
(lscpu 2>/dev/null || cat /proc/cpuinfo) > "$out/cpu.txt"
for round in 1 2 3; do
  for t in "${threads[@]}"; do
    for m in det det-opt; do
      "$rt" bench "$dir/$m.onnx" --input-shape x=1,3,640,640 --threads "$t" --runs 15 --warmup 3 \
        --json "$out/$m-t$t-r$round.json" > /dev/null
    done
    for m in cls cls-opt; do
      "$rt" bench "$dir/$m.onnx" --input-shape x=1,3,48,192 --threads "$t" --runs 200 --warmup 20 \
        --json "$out/$m-t$t-r$round.json" > /dev/null
    done
  done
done
# Frame pipelining: N independent frames in flight on N single-threaded workers.
for n in "${threads[@]}"; do
  [ "$n" -gt 1 ] || continue
  "$rt" bench "$dir/det-opt.onnx" --input-shape x=1,3,640,640 --runs $((8 * n)) --warmup 2 \
    --pipeline "$n" --json "$out/det-opt-pipe$n.json" > /dev/null
  "$rt" bench "$dir/cls-opt.onnx" --input-shape x=1,3,48,192 --runs $((200 * n)) --warmup 20 \
    --pipeline "$n" --json "$out/cls-opt-pipe$n.json" > /dev/null
done
echo done
