#!/usr/bin/env bash
# The CIFAR-10 study (run.py) on a GPU machine without network:
#
#   bash projects/cifar10_images/run_gpu.sh [run.py's options]
#
# Runs on $PYTHON (default python3), the repository's loca_mm first on the
# path; where that Python lacks the OpenMMLab stack, it is installed offline
# from .gpu_wheels/ into a temporary folder (tools/benchmark/offline_stack.sh,
# as for gpu_check.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=cifar10_images
source tools/benchmark/offline_stack.sh

"$PYTHON" projects/cifar10_images/run.py "$@"
