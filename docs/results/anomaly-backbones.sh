#!/usr/bin/env bash
# Reproduces the tables of docs/results/anomaly-backbones.md: one command.
#
#   bash docs/results/anomaly-backbones.sh [OUT_DIR]        (default: anomaly-results/)
#   FINETUNE=0 bash docs/results/anomaly-backbones.sh        (fit-only rows; ~10 min on 2 cores)
#
# The five generated MVTec-layout sets (brick, grass, gravel textures; coffee, astronaut photo
# patches; 192², seed 1), and per backbone (PP-OCRv4 det, MobileNetV2, EfficientNet-Lite0: the
# named backbones of `anomaly fit`), two detectors: fit-only with shared map Gaussians and the
# pooled image score (the defaults), and one Gaussian per position with the map-max image score.
# With FINETUNE=1 (default) also each backbone fine-tuned for 3 epochs on each set's normal
# images (`anomaly finetune`, ~5 min per set and backbone; FT_BACKBONES and FT_SETS pick
# them, FIT=0 skips the fit-only rows). Metrics from `edgeslim eval` (tract, the exported
# graph). Prints one markdown row per (config, set).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-anomaly-results}
FINETUNE=${FINETUNE:-1}
FIT=${FIT:-1}
FT_BACKBONES=${FT_BACKBONES:-ppocr-det mobilenetv2 efficientnet-lite0}
FT_SETS=${FT_SETS:-brick grass gravel coffee astronaut}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p edgeslim >&2
ES=${ES:-$PWD/target/release/edgeslim}
"$ES" assets fetch >&2
SETS="brick grass gravel coffee astronaut"

for t in $SETS; do
  [ -d "$OUT/$t" ] || "$ES" anomaly make-data --texture "$t" --seed 1 -o "$OUT/$t" >&2
done

row() { # config set eval.json
  jq -r --arg c "$1" --arg s "$2" '
    def p: . * 1000 | round / 10 | tostring;
    "| \($c) | \($s) | \(.image_auroc | p) | \(.pixel_auroc | p) | \(.pro | p) | \(.false_positive_rate | p) | \(.true_positive_rate | p) |"' "$3"
}

echo "| config | set | image AUROC | pixel AUROC | PRO | FPR @T | TPR @T |"
echo "|---|---|---|---|---|---|---|"
[ "$FIT" = 1 ] && for bb in ppocr-det mobilenetv2 efficientnet-lite0; do
  for mode in "fit:" "per-position:--per-position --image-score map-max"; do
    tag=${mode%%:*}
    flags=${mode#*:}
    for t in $SETS; do
      det="$OUT/$t-$bb-$tag.onnx"
      # shellcheck disable=SC2086
      "$ES" anomaly fit --backbone "$bb" --normal "$OUT/$t/train/good" -o "$det" --maps $flags >&2
      "$ES" eval "$det" --task anomaly --data "$OUT/$t" --json "$det.json" >&2
      row "$bb $tag" "$t" "$det.json"
    done
  done
done

if [ "$FINETUNE" = 1 ]; then
  for bb in $FT_BACKBONES; do
    for t in $FT_SETS; do
      ft="$OUT/$t-$bb-ft.onnx"
      "$ES" anomaly finetune --backbone "$bb" --normal "$OUT/$t/train/good" \
        -o "$ft" --curves "$OUT/$t-$bb-ft.json" --epochs 3 --threads 2 >&2
      for mode in "fit:" "per-position:--per-position --image-score map-max"; do
        tag=${mode%%:*}
        flags=${mode#*:}
        det="$OUT/$t-$bb-ft-$tag.onnx"
        # shellcheck disable=SC2086
        "$ES" anomaly fit --backbone "$ft" --normal "$OUT/$t/train/good" -o "$det" --maps $flags >&2
        "$ES" eval "$det" --task anomaly --data "$OUT/$t" --json "$det.json" >&2
        row "$bb fine-tuned $tag" "$t" "$det.json"
      done
    done
  done
fi
