#!/usr/bin/env bash
# The reliability campaign (issue 16) in one command: every libFuzzer target (the list of
# scripts/fuzz.sh, so a new target there is in the campaign too), soaks of every mode across
# processes, chaos (SIGKILLs at random points, at the library's test seams and asleep in a futex)
# in every mode, and the scribbling peer in every mode. Writes results.json and results.md (a
# table) to its output directory and prints the table; exits non-zero if any check failed.
#   scripts/campaign.sh           the full campaign (about 1.5 to 2 hours on 2 cores)
#   scripts/campaign.sh --quick   every part for a few seconds (about 3 minutes; CI runs it)
#   options: --out DIR (default build-campaign/ or build-campaign-quick/), --fresh (forget the
#   finished steps; the corpus stays), --only PART... (fuzz soak chaos scribble, or step ids)
# Interrupt it at any time: the same command resumes (finished steps are skipped, a fuzz target
# continues from its executions so far and its corpus in <out>/corpus/). Progress and an ETA go
# to stderr. What each part checks: docs/security.md, "How it is tested".
set -euo pipefail
cd "$(dirname "$0")/.."
# The drivers (tests/campaign/, flatring-campaign) come from the test build; scripts/fuzz.sh
# builds the fuzz targets itself.
cmake --preset test >/dev/null
cmake --build --preset test -j"$(nproc)" --target flatring-campaign
# Debian's interpreter: another python3 may come first on PATH.
exec /usr/bin/python3 scripts/campaign.py "$@"
