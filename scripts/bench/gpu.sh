#!/usr/bin/env bash
# Real-GPU benchmark (not a test), for a Linux machine with a GPU and a Vulkan driver:
# `burrow bench --backend wgpu` with each kernel family on the default model and on a larger model
# given as an argument, and the GB/s of weights the GPU family's decode matvecs read against the
# machine's copy bandwidth; prints the results and rewrites the gpu section of BENCHMARKS.md
# (scripts/bench/gpu.py).
#
#   scripts/bench/gpu.sh [LARGER_MODEL.gguf ...] [--burrow PATH] [--repeats N] [--out FILE] [--no-write]
#
# Needs only python3 and the burrow binary (`make build` on the same architecture; carry
# target/release/burrow and the default model to a machine that cannot build) and a Vulkan loader
# (on a lent device machine, the device README's recipe). Refuses a CPU adapter (lavapipe) unless
# --allow-cpu, which labels the section as such.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 scripts/bench/gpu.py "$@"
