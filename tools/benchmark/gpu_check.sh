#!/usr/bin/env bash
# The prepared GPU check (tools/benchmark/gpu_check.py) on a machine with one
# GPU, in at most 5 minutes, without network.
#
#   bash tools/benchmark/gpu_check.sh [--out DIR] [--force] [--dry-run]
#
# Runs on $PYTHON (default python3), the repository's loca_mm first on the
# path. Where that Python lacks the OpenMMLab stack, the wheels that
# tools/benchmark/prepare_gpu_check.sh wrote into .gpu_wheels/ are installed
# (only the packages it lacks, offline) into a temporary folder put on the
# path. Without CUDA, or with --dry-run, every part runs on the CPU at tiny
# sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=gpu_check
source tools/benchmark/offline_stack.sh

"$PYTHON" -c '
import torch
cuda = torch.cuda.is_available()
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"GPU {torch.cuda.get_device_name(0) if cuda else None}")'
# gpu_check.py keeps to its own time limit and writes what finished; this
# stops it if it hangs.
timeout -k 10 600 "$PYTHON" tools/benchmark/gpu_check.py "$@"
