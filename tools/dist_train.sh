#!/usr/bin/env bash
# Distributed training with torchrun (PyTorch DDP).
#   tools/dist_train.sh CONFIG GPUS [train.py arguments]
# GPUS is the number of processes on this node (on a machine without CUDA,
# CPU processes with the gloo backend). For several nodes, run the script on
# every node with NNODES, NODE_RANK (0..NNODES-1), MASTER_ADDR (the address of
# node 0) and PORT (free on node 0) set in the environment.
set -e

CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
python -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
