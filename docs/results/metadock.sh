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
threads=${THREADS:-0}     # engine threads per run (0: all cores)
mkdir -p "$out"
[ -d "$out/pool" ] || "$bin" data fewshot -o "$out/pool"
# The support set of the first 5-way K-shot meta-test episode as class folders (what a user
# hands to `meta adapt`), for the task models' latency.
support() {
  local k=$1 dir="$out/support-${1}s"
  [ -d "$dir" ] && return
  [ -f "$out/pool/episodes-meta-test-5w${k}s15q.json" ] || \
    "$bin" data fewshot --shots "$k" -o "$out/pool-${k}s" >/dev/null
  local pool="$out/pool"; [ -d "$out/pool-${k}s" ] && pool="$out/pool-${k}s"
  python3 - "$pool" "$dir" "$k" <<'PY'
import json, os, shutil, sys
pool, out, k = sys.argv[1], sys.argv[2], sys.argv[3]
e = json.load(open(f"{pool}/episodes-meta-test-5w{k}s15q.json"))["episodes"][0]
for way, f in e["support"]:
    d = os.path.join(out, f"way-{way}")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(pool, f), d)
PY
}
for k in $shots; do
  support "$k"
  for cfg in "conv4" "conv4-wide" "conv4-wide --metadock --target-active 0.25"; do
    name="$(echo "$cfg" | cut -d' ' -f1)$(echo "$cfg" | grep -q metadock && echo -dock || true)-${k}s"
    [ -d "$out/$name" ] || "$bin" meta train --data "$out/pool" --arch $cfg --algo "$algo" \
      --shots "$k" --episodes "$steps" --inner-steps "$inner" --test-steps "$test_steps" \
      --val-every 50 --val-tasks 20 --threads "$threads" -o "$out/$name" | tee "$out/$name.train.txt"
    [ -f "$out/$name.json" ] || "$bin" meta eval "$out/$name" --data "$out/pool" --tasks "$tasks" \
      --shots "$k" --threads "$threads" --json "$out/$name.json" | tee "$out/$name.eval.txt"
    [ -f "$out/$name.onnx" ] || "$bin" meta adapt "$out/$name" --support "$out/support-${k}s" \
      --bench-runs 500 -o "$out/$name.onnx" | tee "$out/$name.adapt.txt"
  done
done
# Task by task (the same meta-test tasks for every model): the pruned wide network against
# the small dense one and against the wide dense one, mean difference ± 95 % CI.
for k in $shots; do
  python3 - "$out" "$k" <<'PY' | tee "$out/paired-${k}s.txt"
import json, math, sys
out, k = sys.argv[1], sys.argv[2]
load = lambda n: json.load(open(f"{out}/{n}-{k}s.json")).get("per_task", [])
dock = load("conv4-wide-dock")
for other in ["conv4", "conv4-wide"]:
    base = load(other)
    if not dock or len(base) != len(dock):
        print(f"{k}-shot: no per-task accuracies for {other}")
        continue
    d = [a - b for a, b in zip(dock, base)]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))
    print(f"{k}-shot, {len(d)} tasks: wide + MetaDOCK minus {other}: {100*m:+.2f} ± {100*1.96*sd/math.sqrt(len(d)):.2f} points")
PY
done
# The three outer loops side by side on the small dense Conv-4, 5-way 1-shot (ALGOS=1).
if [ "${ALGOS:-0}" = 1 ]; then
  for a in maml imaml; do
    name="conv4-$a-1s"
    [ -d "$out/$name" ] || "$bin" meta train --data "$out/pool" --arch conv4 --algo "$a" \
      --shots 1 --episodes "$steps" --inner-steps "$inner" --test-steps "$test_steps" \
      --val-every 50 --val-tasks 20 --threads "$threads" -o "$out/$name" | tee "$out/$name.train.txt"
    [ -f "$out/$name.json" ] || "$bin" meta eval "$out/$name" --data "$out/pool" --tasks "$tasks" \
      --shots 1 --threads "$threads" --json "$out/$name.json" | tee "$out/$name.eval.txt"
  done
fi
# The task models of one meta-test task (the first episode's support set) timed side by side.
for k in $shots; do
  "$bin" bench "$out/conv4-${k}s.onnx" "$out/conv4-wide-${k}s.onnx" "$out/conv4-wide-dock-${k}s.onnx" \
    --input-shape x=1,1,28,28 --runs 500 --json "$out/bench-${k}s.json" | tail -5 | tee "$out/bench-${k}s.txt"
done
