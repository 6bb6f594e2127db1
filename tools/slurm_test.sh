#!/usr/bin/env bash
# Evaluation on a slurm cluster, one task per GPU.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments]
set -x
source "$(dirname "$0")/launch_common.sh"

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
srun_tool "$PARTITION" "$JOB_NAME" test.py "$CONFIG" "$CHECKPOINT" \
    --launcher=slurm "${@:5}"
