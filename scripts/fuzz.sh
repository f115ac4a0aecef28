#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 14, ASan + UBSan, fuzz/) and runs each for a bounded time.
#   scripts/fuzz.sh [seconds per target] [target...]   (default 60 s; reader mpmc typed open schema wait frames)
# Each target starts from the committed seed corpus (fuzz/corpus/<target>/); new inputs go to
# build-fuzz/corpus/<target>/ and crashing inputs to build-fuzz/artifacts/<target>/. Exits non-zero
# if any target crashed, leaked, hung past 10 s on one input, or tripped a sanitizer. Prints the
# executions per target and writes them to build-fuzz/fuzz-summary.txt.
#   scripts/fuzz.sh --list    prints the default targets (scripts/campaign.sh runs each of them)
# FUZZ_OUT=<dir> puts the corpus, artifacts, logs and summary there instead of build-fuzz/
# (scripts/campaign.sh keeps one corpus across its runs that way).
set -euo pipefail
cd "$(dirname "$0")/.."
list=0
if [[ ${1:-} == --list ]]; then
  list=1
  shift
fi
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then targets=(reader mpmc typed open schema wait frames); fi
if ((list)); then
  echo "${targets[@]}"
  exit 0
fi
out=${FUZZ_OUT:-build-fuzz}
jobs=${JOBS:-$(nproc)}
cxx=${FUZZ_CXX:-clang++-14}
# Preset fuzz (CMakePresets.json): -fsanitize=fuzzer-no-link,address,undefined
# -fno-sanitize-recover=all -fsanitize-recover=alignment -fno-omit-frame-pointer. Alignment reports
# are recoverable only so that fuzz/ubsan.supp can silence the one in FlatBuffers' own accessors;
# any other runtime error in the log fails the run below. FUZZ_CXX replaces the preset's compiler.
cmake --preset fuzz -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build --preset fuzz -j"$jobs" --target fuzz_reader fuzz_mpmc fuzz_typed fuzz_open fuzz_schema fuzz_wait \
  fuzz_frames

summary=$out/fuzz-summary.txt
mkdir -p "$out"
: >"$summary"
failed=0
for target in "${targets[@]}"; do
  corpus=$out/corpus/$target
  artifacts=$out/artifacts/$target/
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  log=$out/fuzz_$target.log
  max_len=4096
  if [[ $target != typed ]]; then max_len=16384; fi  # a whole 4 KiB ring image
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:suppressions="$PWD/fuzz/ubsan.supp" \
    build-fuzz/fuzz/fuzz_$target "$corpus" "fuzz/corpus/$target" -max_total_time="$seconds" \
    -timeout=10 -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1
  rc=$?
  set -e
  if [[ $rc -eq 0 ]] && grep -q "runtime error:" "$log"; then rc=1; fi  # a recovered report
  execs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  crashes=$(find "$artifacts" -type f | wc -l)
  line="fuzz_$target: ${seconds}s, $execs executions, exit $rc, $crashes crashing inputs"
  echo "$line" | tee -a "$summary"
  if [[ $rc -ne 0 ]]; then
    failed=1
    tail -n 60 "$log" >&2
  fi
done
# Scratch segments a fuzzer left when it crashed (on a normal exit it removes its own). Only those
# of processes that are gone: the names end in the fuzzer's pid, and another fuzz.sh (a campaign
# runs two at a time) may have a fuzzer running whose segments these patterns also match; removing
# those made that fuzzer's next Ring::open fail with not_found (fuzz_schema's "deadly signal" that
# no input reproduced alone).
for f in /dev/shm/flatring.fuzz-* /dev/shm/flatring-wait.fuzz-*; do
  [[ -e $f ]] || continue
  pid=$(basename "$f" | sed -E 's/\.state$//; s/.*-([0-9]+)$/\1/')
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then continue; fi
  rm -rf "$f" 2>/dev/null || true
done
exit $failed
