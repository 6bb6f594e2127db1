# Sourced by dist_*.sh and slurm_*.sh: how loca_mm's tools are started on
# many processes, in one place.

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}"

# torchrun_tool NPROC SCRIPT [ARGS...]: SCRIPT (train.py, test.py) in NPROC
# processes on this node; the node layout comes from NNODES, NODE_RANK,
# MASTER_ADDR and PORT (one node on 127.0.0.1:29500 by default).
torchrun_tool() {
    local nproc=$1 script=$2
    shift 2
    python -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$nproc" \
        --master_port="${PORT:-29500}" \
        "$TOOLS_DIR/$script" "$@"
}

# srun_tool PARTITION JOB_NAME SCRIPT [ARGS...]: SCRIPT as one slurm task per
# GPU; GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5) and SRUN_ARGS from the
# environment.
srun_tool() {
    local partition=$1 job_name=$2 script=$3
    shift 3
    # SRUN_ARGS is split into words on purpose: it holds several options.
    # shellcheck disable=SC2086
    srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"${GPUS_PER_NODE:-8}" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="${GPUS_PER_NODE:-8}" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        python -u "$TOOLS_DIR/$script" "$@"
}
