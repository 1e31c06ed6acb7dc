#!/usr/bin/env bash
# Fuzz the runtime's untrusted inputs for a fixed time and summarise (docs/results/reliability.md).
# Usage: fuzz/run.sh [SECONDS_PER_TARGET=150] [TARGET...]   (4 targets x 150 s = 10 minutes)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts
# from fuzz/seeds/<target> (written by fuzz/seeds.py) and grows fuzz/corpus/<target>; a crash,
# a timeout (10 s per input) or an RSS above 2 GiB stops it and leaves the input in
# fuzz/artifacts/<target>/. The summary goes to fuzz/summary.txt.
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-150}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(onnx_loader npy image http_request)
cargo +nightly fuzz build -O 2>&1 | tail -3 || exit 1
: > summary.txt
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="corpus/$t.log"
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    > "$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  found=$(ls "artifacts/$t" | wc -l)
  echo "$t: exit $rc, ${secs} s, $runs inputs, coverage $cov edges, peak RSS ${rss} MB, corpus $(ls "corpus/$t" | wc -l) files, artifacts $found" | tee -a summary.txt
  if [ "$found" -gt 0 ]; then
    ls "artifacts/$t" | sed 's/^/  /' | tee -a summary.txt
    failed=1
  fi
done
exit $failed
