#!/usr/bin/env bash
# Formats the C++ sources with clang-format 14 and the project's .clang-format:
#   scripts/format.sh           rewrites every tracked *.hpp, *.cpp and *.h under include src tests
#                               tools bench examples fuzz in place;
#   scripts/format.sh --check   changes nothing, lists the files that are not formatted and exits 1
#                               if there are any.
# Generated headers (*_generated.h, which live in build dirs anyway) and fuzz corpora are skipped.
# CLANG_FORMAT overrides the binary; it must be version 14 (other versions format differently).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: scripts/format.sh [--check]" >&2; exit 2 ;;
esac
clang_format=${CLANG_FORMAT:-clang-format-14}
if ! command -v "$clang_format" >/dev/null; then
  echo "format: $clang_format not found (bash scripts/deps.sh installs clang-format-14)" >&2
  exit 2
fi
if ! "$clang_format" --version | grep -q 'version 14\.'; then
  echo "format: $clang_format is not clang-format 14: $("$clang_format" --version)" >&2
  exit 2
fi

files=()
while IFS= read -r -d '' f; do
  case "$f" in
    *_generated.h | */corpus/*) continue ;;
    *.hpp | *.cpp | *.h) [[ -f $f ]] && files+=("$f") ;;  # tracked but deleted: skip
  esac
done < <(git ls-files -z -- include src tests tools bench examples fuzz python)
if ((${#files[@]} == 0)); then
  echo "format: no files" >&2
  exit 2
fi

if ((check == 0)); then
  "$clang_format" --style=file -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$clang_format" --style=file --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "format: ${#bad[@]} of ${#files[@]} files are not formatted (run scripts/format.sh):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ${#files[@]} files formatted"
