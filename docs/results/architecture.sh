#!/usr/bin/env bash
# Lines per crate, the crate dependency graph and the module cycles inside each crate, for the
# working tree or for a commit: docs/results/architecture.sh [COMMIT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [ $# -gt 0 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  git -C "$repo" archive "$1" | tar -x -C "$tmp"
  repo=$tmp
fi
python3 "$here/architecture.py" "$repo"
