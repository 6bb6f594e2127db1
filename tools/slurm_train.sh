#!/usr/bin/env bash
# Training on a slurm cluster, one task per GPU.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments]
set -x
source "$(dirname "$0")/launch_common.sh"

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
srun_tool "$PARTITION" "$JOB_NAME" train.py "$CONFIG" --work-dir="$WORK_DIR" \
    --launcher=slurm "${@:5}"
