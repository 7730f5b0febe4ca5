#!/usr/bin/env bash
# Native benchmark (not a test): `burrow bench` on --backend cpu and wgpu against llama.cpp (through
# llama-cpp-python) on the same GGUF; prints the results and rewrites the native section of
# BENCHMARKS.md (see scripts/bench/native.py).
#
#   scripts/bench/native.sh [--repeats N] [--no-write]
#
# The first run builds llama-cpp-python from PyPI into .cache/bench/venv (~10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.cache/bench/venv
# The llama.cpp the peers' figures in the shared reference were measured with.
LLAMA_CPP_PYTHON_VERSION=0.3.36
# llama.cpp's default native build enables AMX and dies with "Illegal instruction" on these VMs,
# and so does an AVX-512 build on the CPUs without it (AMD EPYC machines here): AVX-512 only where
# the CPU reports it, AMX never.
AVX512=OFF
grep -qw avx512f /proc/cpuinfo && AVX512=ON
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=$AVX512 -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || true
}

if [ "$(installed_version)" != "$LLAMA_CPP_PYTHON_VERSION" ]; then
  echo "bench: building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION into $VENV (about 10 minutes)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # Always from source, and never from pip's wheel cache: a wheel cached from a default build
  # would bring the crashing AMX code back.
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" install --quiet --no-cache-dir \
    --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
fi

exec "$VENV/bin/python" scripts/bench/native.py "$@"
