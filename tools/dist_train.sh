#!/usr/bin/env bash
# Distributed training with torchrun (PyTorch DDP).
#   tools/dist_train.sh CONFIG GPUS [train.py arguments]
# GPUS is the number of processes on this node (on a machine without CUDA,
# CPU processes with the gloo backend). For several nodes, run the script on
# every node with NNODES, NODE_RANK (0..NNODES-1), MASTER_ADDR (the address of
# node 0) and PORT (free on node 0) set in the environment.
set -e
source "$(dirname "$0")/launch_common.sh"

CONFIG=$1
GPUS=$2
torchrun_tool "$GPUS" train.py "$CONFIG" --launcher pytorch "${@:3}"
