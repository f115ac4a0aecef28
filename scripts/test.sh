#!/usr/bin/env bash
# Installs what is missing, builds flatring with -Werror and runs the whole suite through ctest,
# then the sanitizer and fuzzing runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# The tree must be formatted (.clang-format, clang-format 14): fail before building anything.
bash scripts/format.sh --check
jobs=$(nproc)
cmake --preset test >/dev/null  # build-test/ (CMakePresets.json)
cmake --build --preset test -j"$jobs"
ctest --preset test -j"$jobs"
bash scripts/package_test.sh build-test
# The suite again under ASan+UBSan, the threaded stress tests under TSan (scripts/sanitize.sh),
# then each libFuzzer target for 30 s (scripts/fuzz.sh; the long runs are scripts/campaign.sh's).
# FLATRING_QUICK=1 skips both locally.
if [[ ${FLATRING_QUICK:-0} != 1 ]]; then
  bash scripts/sanitize.sh all
  bash scripts/fuzz.sh 30
  # The reliability campaign's quick mode: every fuzz target, soak, chaos run and scribbling peer
  # of scripts/campaign.sh for a few seconds each (about 3 minutes; the full campaign is not CI's).
  bash scripts/campaign.sh --quick --fresh
fi
