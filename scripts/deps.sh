#!/usr/bin/env bash
# Installs the Debian packages flatring needs, only those missing. Needs root (or sudo) when
# anything is missing; does nothing otherwise.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libboost-dev libflatbuffers-dev flatbuffers-compiler catch2
  libbenchmark-dev libcli11-dev nlohmann-json3-dev libfmt-dev gnuplot-nox
  clang-14 libclang-rt-14-dev clang-format-14
  python3-dev pybind11-dev python3-pybind11 python3-flatbuffers python3-pytest
  libzmq3-dev cppzmq-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
