#!/usr/bin/env bash
# The test suite under sanitizers, in build dirs of their own:
#   build-asan: the whole suite (every tag, forked processes included) under ASan + UBSan;
#   build-tsan: the threaded stress tests (tag [threads]) under TSan. TSan is for threads of one
#               process; the forked tests would only report the other process's accesses as unknown.
# Any report fails the run (-fno-sanitize-recover=all, halt_on_error). Stress sizes are scaled by
# FLATRING_STRESS_SCALE as in the normal build (default 1: >= 10^5 records per stress case).
# Usage: scripts/sanitize.sh [asan|tsan|all]   (default all)
# The flags are the asan and tsan presets in CMakePresets.json; the stress scale is passed on top.
# Both build with -O1 -g1 (CMAKE_CXX_FLAGS_RELWITHDEBINFO of preset sanitizer-base): the
# sanitizers' usual level, with line tables for their reports, at about half the compile time of
# -O2 -g, which CI's time budget needs.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=${JOBS:-$(nproc)}
scale=${FLATRING_STRESS_SCALE:-1}

if [[ $what == all || $what == asan ]]; then
  # Preset asan: -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  # -Wno-maybe-uninitialized (GCC 12 under ASan warns falsely inside libstdc++'s <regex>, Catch2)
  # -Wno-stringop-overread (GCC 12 under ASan at -O1 warns falsely in FlatBuffers' reflection
  # headers: LookupByKey's strcmp on a key "of size 1", the empty Table base).
  # Test preset asan sets ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 and
  # UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1.
  cmake --preset asan -DFLATRING_STRESS_SCALE="$scale" >/dev/null
  cmake --build --preset asan -j"$jobs"
  ctest --preset asan -j"$jobs"
fi

if [[ $what == all || $what == tsan ]]; then
  # Preset tsan: -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan. -Wno-tsan: TSan does not
  # model the sleep handshake's fences (wait.hpp); it still checks every data access, which is what
  # this run is for. Lost wake-ups are covered by the blocking tests.
  cmake --preset tsan -DFLATRING_STRESS_SCALE="$scale" >/dev/null
  cmake --build --preset tsan -j"$jobs" --target flatring_tests
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/flatring_tests "[threads]"
fi
