#!/usr/bin/env bash
# Train the CIFAR-100 table and print it.
#
#   bash tools/reproduce_cifar100.sh GPUS [PAIRS] [METHODS] [SEEDS] [--dry-run]
#
# GPUS     GPUs to use; each run trains on one GPU (the recipe's batch of 64),
#          GPUS runs at a time.
# PAIRS    comma-separated teacher_student pairs as named in the configs
#          (resnet56_resnet20,vgg13_vgg8,...) or "all" (default, 11 pairs).
# METHODS  comma-separated among kd,loca,dkd,dkdloca (default all four).
# SEEDS    comma-separated seeds (default 0,1,2).
# A pair, method or seed given twice is refused: two runs never share a
# work dir.
#
# Run S of config C trains with tools/dist_train.sh into $WORK_DIRS/C/seed<S>
# (WORK_DIRS=work_dirs) with randomness.seed=S. A run that finished (it
# validated the last epoch of its schedule and the scalars recorded it, as
# tools/analysis_tools/collect_results.py --finished says) is skipped; one
# with a checkpoint resumes, unless that checkpoint is the final one
# (epoch_$EPOCHS.pth, EPOCHS=240: killed during its final validation, which
# resuming would not run again): that run trains again from the start. The
# collector's table of the finished runs ends the output.
# --dry-run prints the commands without running them.
set -euo pipefail

ALL_PAIRS="resnet56_resnet20,resnet110_resnet32,resnet32x4_resnet8x4,\
wrn-40-2_wrn-16-2,wrn-40-2_wrn-40-1,vgg13_vgg8,resnet32x4_shufflev1,\
wrn-40-2_shufflev1,vgg13_mobilenetv2,resnet50_mobilenetv2,\
resnet32x4_shufflev2"
ALL_METHODS="kd,loca,dkd,dkdloca"

DRY_RUN=0
positional=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) positional+=("$arg") ;;
    esac
done
if [ ${#positional[@]} -lt 1 ] || [ ${#positional[@]} -gt 4 ]; then
    sed -n '4p' "$0" >&2
    exit 2
fi
GPUS=${positional[0]}
PAIRS=${positional[1]:-all}
METHODS=${positional[2]:-$ALL_METHODS}
SEEDS=${positional[3]:-0,1,2}
EPOCHS=${EPOCHS:-240}
WORK_DIRS=${WORK_DIRS:-work_dirs}
PYTHON=${PYTHON:-python}
[ "$PAIRS" != all ] || PAIRS=$ALL_PAIRS
case "$GPUS" in
    ''|*[!0-9]*|0) echo "GPUS must be a positive number, got '$GPUS'" >&2
                   exit 2 ;;
esac

# Refuse an item given twice in a comma-separated list ($1 names the list).
refuse_repeats() {
    local seen="," item
    for item in ${2//,/ }; do
        case "$seen" in
            *",$item,"*) echo "$1 '$item' given twice in '$2': its runs" \
                             "would share a work dir" >&2
                         exit 2 ;;
        esac
        seen+="$item,"
    done
}
refuse_repeats pair "$PAIRS"
refuse_repeats method "$METHODS"
seeds=""
for seed in ${SEEDS//,/ }; do
    case "$seed" in
        ''|*[!0-9]*) echo "a seed is a number, got '$seed'" >&2
                     exit 2 ;;
    esac
    seeds+="${seeds:+,}$((10#$seed))"
done
refuse_repeats seed "$seeds"

cd "$(dirname "$0")/.."
configs=()
for method in ${METHODS//,/ }; do
    case ",$ALL_METHODS," in
        *",$method,"*) ;;
        *) echo "unknown method '$method' (one of $ALL_METHODS)" >&2
           exit 2 ;;
    esac
    for pair in ${PAIRS//,/ }; do
        matches=(configs/distill/cifar100/"${method}"_*"${pair}"_*cifar100.py)
        if [ ${#matches[@]} -ne 1 ] || [ ! -f "${matches[0]}" ]; then
            echo "no single config for method '$method' and pair '$pair'" \
                "in configs/distill/cifar100 (found: ${matches[*]})" >&2
            exit 2
        fi
        case " ${configs[*]:-} " in
            *" ${matches[0]} "*) echo "pairs '$PAIRS' choose ${matches[0]}" \
                                     "twice" >&2
                                 exit 2 ;;
        esac
        configs+=("${matches[0]}")
    done
done

collect="$PYTHON tools/analysis_tools/collect_results.py"
# The work dirs whose run finished, among the arguments, one a line.
finished_runs() {
    [ $# -gt 0 ] || return 0
    $collect --finished "$@"
}

# The runs, dealt to the GPUs in turn; each GPU trains its runs one by one.
work_dirs=()
for config in "${configs[@]}"; do
    name=$(basename "$config" .py)
    for seed in ${seeds//,/ }; do
        work_dirs+=("$WORK_DIRS/$name/seed$seed")
    done
done
done_before=$(finished_runs "${work_dirs[@]}")
queues=()
run=0
index=0
for config in "${configs[@]}"; do
    for seed in ${seeds//,/ }; do
        work_dir=${work_dirs[index]}
        index=$((index + 1))
        if grep -qxF "$work_dir" <<< "$done_before"; then
            echo "# finished, skipped: $work_dir"
            continue
        fi
        resume=""
        if [ -f "$work_dir/last_checkpoint" ]; then
            if [ "$(basename "$(cat "$work_dir/last_checkpoint")")" \
                    = "epoch_$EPOCHS.pth" ]; then
                echo "# final checkpoint without its validation recorded," \
                     "trained again from the start: $work_dir"
            else
                resume=" --resume"
            fi
        fi
        gpu=$((run % GPUS))
        command="CUDA_VISIBLE_DEVICES=$gpu PORT=$((29500 + gpu))"
        command+=" bash tools/dist_train.sh $config 1 --work-dir $work_dir"
        command+=" --cfg-options randomness.seed=$seed$resume"
        queues[gpu]+="$command > $work_dir.out 2>&1"$'\n'
        run=$((run + 1))
    done
done

if [ "$DRY_RUN" = 1 ]; then
    for queue in "${queues[@]}"; do
        printf '%s' "$queue"
    done
    echo "$collect ${work_dirs[*]}"
    exit 0
fi

for work_dir in "${work_dirs[@]}"; do
    mkdir -p "$(dirname "$work_dir")"
done
pids=()
for queue in "${queues[@]}"; do
    (
        while IFS= read -r command; do
            [ -n "$command" ] || continue
            echo "$command"
            eval "$command" || echo "FAILED: $command" >&2
        done <<< "$queue"
    ) &
    pids+=($!)
done
for pid in "${pids[@]}"; do
    wait "$pid"
done
done_now=$(finished_runs "${work_dirs[@]}")
finished=()
for work_dir in "${work_dirs[@]}"; do
    if grep -qxF "$work_dir" <<< "$done_now"; then
        finished+=("$work_dir")
    else
        echo "# not finished: $work_dir (see $work_dir.out)" >&2
    fi
done
[ ${#finished[@]} -gt 0 ] || { echo "no run finished" >&2; exit 1; }
$collect "${finished[@]}"
