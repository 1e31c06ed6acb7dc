#!/usr/bin/env bash
# Step 1 of examples/live-tracking: the live tracker on this machine.
# Uses the laptop's camera when there is one (/dev/video0, or CAMERA=/dev/videoN), otherwise a
# generated sequence from the packaged photographs, and serves the page on 127.0.0.1:8080.
#   bash examples/live-tracking/laptop.sh            # camera if present, else synthetic:3
#   MODEL=models/siamese-tracker-p25 bash examples/live-tracking/laptop.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${MODEL:-models/siamese-tracker}
camera=${CAMERA:-/dev/video0}
port=${PORT:-8080}
cargo build --release -q -p edgeslim-runtime
if [ -e "$camera" ]; then
  source=("--source" "$camera" "--camera-size" "${CAMERA_SIZE:-640x480}")
else
  echo "no camera at $camera: tracking a generated sequence instead (synthetic:3)" >&2
  cargo build --release -q -p edgeslim
  ./target/release/edgeslim assets fetch >/dev/null
  source=("--source" "synthetic:3" "--fps" "25")
fi
echo "open http://127.0.0.1:$port/ and drag a box around an object (Ctrl-C to stop)" >&2
exec ./target/release/edgeslim-rt track "$model" "${source[@]}" --serve "127.0.0.1:$port" --quiet
