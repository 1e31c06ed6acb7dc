#!/usr/bin/env bash
# docs/results/tracking.md: the zoo Siamese tracker (models/siamese-tracker) on the benchmark
# set (6 generated OTB-layout sequences × 100 frames, seed 7), the same tracker pruned (both
# graphs, no fine-tuning), and a tracker that never moves (the first box in every frame).
# Single thread, tract. Prints the markdown table.
#
#   bash docs/results/tracking.sh [OUT_DIR]      (default: tracking-results/)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-tracking-results}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim -p edgeslim-runtime >&2
ES=target/release/edgeslim
RT=target/release/edgeslim-rt
TRK=models/siamese-tracker
DATA="$OUT/bench"
[ -d "$DATA" ] || "$ES" data tracking -o "$DATA" --sequences 6 --frames 100 --seed 7 >&2

"$RT" track "$TRK" --eval "$DATA" --json "$OUT/original.json" --quiet >&2
for v in bn:0.1 bn:0.25 l1:0.25 bn:0.4; do
  c=${v%%:*}; r=${v##*:}; d="$OUT/$c-$r"
  mkdir -p "$d"
  "$ES" compress prune "$TRK/template.onnx" --ratio "$r" --criterion "$c" -o "$d/template.onnx" \
    --report "$d/template" --runs 40 >&2
  "$ES" compress prune "$TRK/search.onnx" --ratio "$r" --criterion "$c" \
    --input-shape search=3,3,127,127 -o "$d/search.onnx" --report "$d/search" --runs 40 >&2
  "$RT" track "$d" --eval "$DATA" --json "$d/eval.json" --quiet >&2
done

python3 - "$OUT" "$DATA" <<'PY'
import json, os, sys
out, data = sys.argv[1], sys.argv[2]

def iou(a, b):
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    u = a[2] * a[3] + b[2] * b[3] - inter
    return inter / u if u > 0 else 0.0

def never_move():
    # runtime/src/track/metrics.rs conventions: 21 thresholds, IoU > t, absent frames left
    # out, sequences weigh the same.
    res = []
    for name in sorted(os.listdir(data)):
        d = os.path.join(data, name)
        gt_file = os.path.join(d, "groundtruth_rect.txt")
        if not os.path.isfile(gt_file):
            continue
        gt = [[float(x) for x in l.replace("\t", ",").split(",")] for l in open(gt_file) if l.strip()]
        absent = [l.strip() == "1" for l in open(os.path.join(d, "absence.label"))]
        first = gt[0]
        ious, errs = [], []
        for t, a in zip(gt, absent):
            if a or t[2] <= 0 or t[3] <= 0:
                continue
            ious.append(iou(first, t))
            dx = (first[0] + first[2] / 2) - (t[0] + t[2] / 2)
            dy = (first[1] + first[3] / 2) - (t[1] + t[3] / 2)
            errs.append((dx * dx + dy * dy) ** 0.5)
        n = len(ious)
        curve = [sum(v > k / 20 for v in ious) / n for k in range(21)]
        res.append((sum(curve) / 21, sum(e <= 20 for e in errs) / n, sum(ious) / n,
                    sum(v > 0.5 for v in ious) / n))
    return [sum(r[i] for r in res) / len(res) for i in range(4)]

def row(name, e, p=None):
    o = e["overall"]
    speed = "—"
    if p:
        s = json.load(open(os.path.join(p, "search", "report.json")))
        t = s["totals"]
        l = s["latency"]
        speed = (f"{t['macs_before'] / 1e6:.1f}M → {t['macs_after'] / 1e6:.1f}M, "
                 f"{l['before_ms']:.2f} → {l['after_ms']:.2f} ms ({l['speedup']:.2f}×)")
    print(f"| {name} | {o['auc']:.3f} | {o['precision_20px']:.3f} | {o['average_overlap']:.3f} "
          f"| {o['success_rate_50']:.3f} | {e['fps']:.1f} | {e['mean_search_ms']:.2f} "
          f"| {e['mean_template_ms']:.2f} | {speed} |")

print("| tracker | AUC | P@20 | AO | SR0.5 | fps (loop) | search ms/frame | template ms | search graph (3 scales): MACs, tract ms before → after |")
print("|---|---|---|---|---|---|---|---|---|")
row("original", json.load(open(os.path.join(out, "original.json"))))
for v in ["bn-0.1", "bn-0.25", "l1-0.25", "bn-0.4"]:
    d = os.path.join(out, v)
    c, r = v.split("-")
    row(f"pruned {r}, `{c}`", json.load(open(os.path.join(d, "eval.json"))), d)
a, p, ao, sr = never_move()
print(f"| never moves (first box) | {a:.3f} | {p:.3f} | {ao:.3f} | {sr:.3f} | — | — | — | — |")
PY
