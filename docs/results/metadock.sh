#!/usr/bin/env bash
# MetaDOCK study (docs/results/metadock.md): small dense Conv-4, large dense Conv-4, and the
# large Conv-4 with MetaDOCK at the small one's kernel budget (25 %), meta-trained on the
# few-shot pool's meta-train classes and scored on the same meta-test tasks.
#   bash docs/results/metadock.sh OUT            (SHOTS="1 5", STEPS, TASKS, ALGO to change)
set -euo pipefail
out=${1:?usage: metadock.sh OUT}
bin=${EDGESLIM:-target/release/edgeslim}
shots=${SHOTS:-1 5}
steps=${STEPS:-100}        # meta-steps (4 tasks each)
tasks=${TASKS:-600}        # meta-test tasks
algo=${ALGO:-fomaml}
inner=${INNER:-3}          # inner steps in meta-training
test_steps=${TEST_STEPS:-5}
mkdir -p "$out"
[ -d "$out/pool" ] || "$bin" data fewshot -o "$out/pool"
for k in $shots; do
  for cfg in "conv4" "conv4-wide" "conv4-wide --metadock --target-active 0.25"; do
    name="$(echo "$cfg" | cut -d' ' -f1)$(echo "$cfg" | grep -q metadock && echo -dock || true)-${k}s"
    [ -d "$out/$name" ] || "$bin" meta train --data "$out/pool" --arch $cfg --algo "$algo" \
      --shots "$k" --episodes "$steps" --inner-steps "$inner" --test-steps "$test_steps" \
      --val-every 50 --val-tasks 20 -o "$out/$name" | tee "$out/$name.train.txt"
    [ -f "$out/$name.json" ] || "$bin" meta eval "$out/$name" --data "$out/pool" --tasks "$tasks" \
      --shots "$k" --json "$out/$name.json" | tee "$out/$name.eval.txt"
  done
done
