#!/usr/bin/env bash
# Installs what is missing, builds flatring and runs the demo (two processes, mixed record sizes up
# to 4 MiB, one injected bad record).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release >/dev/null  # build/ (CMakePresets.json)
cmake --build --preset release -j"$(nproc)" --target flatring-demo
./build/examples/flatring-demo
