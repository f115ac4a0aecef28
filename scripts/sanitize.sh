#!/usr/bin/env bash
# The test suite under sanitizers, in build dirs of their own:
#   build-asan: the whole suite (every tag, forked processes included) under ASan + UBSan;
#   build-tsan: the threaded stress tests (tag [threads]) under TSan. TSan is for threads of one
#               process; the forked tests would only report the other process's accesses as unknown.
# Any report fails the run (-fno-sanitize-recover=all, halt_on_error). Stress sizes are scaled by
# FLATRING_STRESS_SCALE as in the normal build (default 1: >= 10^5 records per stress case).
# Usage: scripts/sanitize.sh [asan|tsan|all]   (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=${JOBS:-$(nproc)}
scale=${FLATRING_STRESS_SCALE:-1}
common=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLATRING_WERROR=ON -DFLATRING_STRESS_SCALE="$scale"
        -DFLATRING_BUILD_BENCH=OFF -DFLATRING_BUILD_EXAMPLES=OFF -DFLATRING_BUILD_TOOLS=ON)

if [[ $what == all || $what == asan ]]; then
  # -Wno-maybe-uninitialized: GCC 12 under ASan warns falsely inside libstdc++'s <regex> (Catch2).
  flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  flags+=" -Wno-maybe-uninitialized"
  cmake -S . -B build-asan "${common[@]}" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
  cmake --build build-asan -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"
fi

if [[ $what == all || $what == tsan ]]; then
  # -Wno-tsan: TSan does not model the sleep handshake's fences (wait.hpp); it still checks every
  # data access, which is what this run is for. Lost wake-ups are covered by the blocking tests.
  flags="-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan"
  cmake -S . -B build-tsan "${common[@]}" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
  cmake --build build-tsan -j"$jobs" --target flatring_tests
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/flatring_tests "[threads]"
fi
