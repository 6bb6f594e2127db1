#!/usr/bin/env bash
# The prepared GPU check (tools/benchmark/gpu_check.py): CUDA vs CPU equality,
# synchronisations per iteration, the loss timings and memory, AMP training
# and a one-GPU NCCL run; at most 5 minutes on one GPU, no network.
#   bash tools/benchmark/gpu_check.sh [--out DIR] [--force] [--dry-run]
# Without CUDA it runs the CPU parts only and exits 0.
set -e
cd "$(dirname "$0")/../.."
PYTHONPATH="$PWD":$PYTHONPATH exec timeout 300 python tools/benchmark/gpu_check.py "$@"
