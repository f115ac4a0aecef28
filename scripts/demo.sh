#!/usr/bin/env bash
# Installs what is missing, builds flatring and runs the demo (two processes, mixed record sizes up
# to 4 MiB, one injected bad record).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target flatring-demo
./build/examples/flatring-demo
