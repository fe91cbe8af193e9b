#!/usr/bin/env bash
# Set up autointerp in ./.venv: CPU torch first (a plain `torch` requirement would pull GBs of
# CUDA wheels), then the package with everything the default run and the tests need, then
# Debian's chromium for the HTML leaderboard test. Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CUDA machines: install the CUDA torch build of your choice before running this script.
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
# llama-cpp-python builds llama.cpp from source. Its default (GGML_NATIVE) build uses every
# instruction the build machine has, and its AMX kernels segfault on the first evaluation on
# AMX-capable Xeons; so build with explicit flags, AMX off, once per flag set, into a wheel
# kept in the user cache (a fresh venv or clone then installs it in seconds).
LLAMA_VERSION=0.3.36
if ! python -c "import llama_cpp" 2>/dev/null; then
  flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  if [ "$(uname -m)" = x86_64 ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    flags="$flags -DGGML_AVX512=ON"
    grep -qw avx512_vnni /proc/cpuinfo && flags="$flags -DGGML_AVX512_VNNI=ON"
    grep -qw avx512_bf16 /proc/cpuinfo && flags="$flags -DGGML_AVX512_BF16=ON"
  fi
  [ "$(uname -m)" = x86_64 ] || flags=""  # other architectures: llama.cpp's own defaults
  flags="$flags -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  key=$(printf '%s %s' "$LLAMA_VERSION" "$flags" | sha1sum | cut -c1-12)
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/autointerp/wheels/llama-$key"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (a few minutes, once): $flags"
    CMAKE_ARGS="$flags" python -m pip wheel -q --no-deps --no-cache-dir \
      --no-binary llama-cpp-python -w "$wheels" "llama-cpp-python==$LLAMA_VERSION"
  fi
  python -m pip install -q "$wheels"/llama_cpp_python-*.whl
fi
python -m pip install -q -e '.[dev]'
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      >/dev/null || echo "warning: could not install chromium (needed by the HTML report test)"
  else
    echo "note: install chromium (sudo apt-get install chromium) for the HTML report test"
  fi
fi
echo "autointerp set up in $(pwd)/.venv"
