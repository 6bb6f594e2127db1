#!/usr/bin/env bash
# Distributed evaluation with torchrun (PyTorch DDP).
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py arguments]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in dist_train.sh.
set -e
source "$(dirname "$0")/launch_common.sh"

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
torchrun_tool "$GPUS" test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch \
    "${@:4}"
