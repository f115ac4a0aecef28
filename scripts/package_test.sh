#!/usr/bin/env bash
# Installs flatring into a temporary prefix, then builds and runs tests/package against it with
# find_package(flatring) only (CMAKE_PREFIX_PATH), and a one-file program with pkg-config only.
#
#   scripts/package_test.sh [BUILD_DIR]
#
# With BUILD_DIR (an already built tree, as scripts/test.sh leaves build-test), installs from it;
# without, configures and builds a fresh tree in the temporary directory first.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
work=$(mktemp -d /tmp/flatring-package.XXXXXX)
trap 'rm -rf "$work"' EXIT

build=${1:-}
if [ -z "$build" ]; then
  build="$work/build"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFLATRING_BUILD_TESTS=OFF \
    -DFLATRING_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$build" -j"$jobs"
fi
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null

for f in bin/flatring bin/flatring-bench include/flatring/flatring.hpp; do
  test -e "$prefix/$f" || { echo "package_test: $f was not installed" >&2; exit 1; }
done
"$prefix/bin/flatring" --version

# The Python package, when the build has it: installed where Debian's interpreter looks under this
# prefix (lib/python3.X/dist-packages), importable from there and working.
pymod=$(find "$prefix" -name '_flatring*.so' | head -n1)
if [ -n "$pymod" ]; then
  PYTHONPATH=$(dirname "$(dirname "$pymod")") /usr/bin/python3 -c '
import flatring, sys
a, b = flatring.Pipe()
a.send_bytes(b"installed")
assert b.recv_bytes() == b"installed"
print("package_test: python flatring from", flatring.__file__)'
fi

cmake -S tests/package -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
found=$(sed -n 's/^flatring_DIR:PATH=//p' "$work/consumer/CMakeCache.txt")
case "$found" in
  "$prefix"/*) ;;
  *) echo "package_test: find_package(flatring) found '$found', not the install in $prefix" >&2; exit 1 ;;
esac
cmake --build "$work/consumer" -j"$jobs"
"$work/consumer/flatring_package_test"
"$work/consumer/flatring_package_bridge_test"

pcdir=$(dirname "$(find "$prefix" -name flatring.pc | head -n1)")
# shellcheck disable=SC2046  # pkg-config output is a list of flags
g++ -std=c++20 tests/package/pkgconfig_main.cpp -o "$work/pkgconfig_test" \
  $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs flatring)
"$work/pkgconfig_test"
echo "package_test: ok"
