#!/usr/bin/env bash
# The six CIFAR-100 teachers of the configs, from mdistiller's release.
#
#   bash tools/model_converters/prepare_cifar100_teachers.sh [TAR] [--force]
#        [--out-dir DIR]
#
# TAR is mdistiller's cifar_teachers.tar (the CRD/RepDistiller teachers,
# cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth); without it the archive
# is downloaded from the mdistiller release. Each teacher is converted with
# tools/model_converters/repdistiller_to_mmpretrain.py to
# DIR/<model>.pth (default checkpoints/cifar100) and loaded back strictly
# into its model config. Existing outputs are kept unless --force.
set -euo pipefail

URL=https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar
# <name in the archive>:<model config in configs/_base_/models/cifar100>
TEACHERS="resnet56:resnet56 resnet110:resnet110 resnet32x4:resnet32x4 \
wrn_40_2:wrn_40_2 vgg13:vgg13 ResNet50:resnet50"

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python}
TAR=""
FORCE=0
OUT_DIR=checkpoints/cifar100
while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --out-dir) OUT_DIR=${2:?--out-dir needs a folder}; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) [ -z "$TAR" ] || { echo "one TAR only, got $TAR and $1" >&2; exit 2; }
           TAR=$1 ;;
    esac
    shift
done

todo=""
for pair in $TEACHERS; do
    model=${pair#*:}
    if [ -e "$OUT_DIR/$model.pth" ] && [ "$FORCE" = 0 ]; then
        echo "$OUT_DIR/$model.pth exists, kept (--force to convert again)"
    else
        todo="$todo $pair"
    fi
done
[ -n "$todo" ] || exit 0

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "$TAR" ]; then
    TAR=$WORK/cifar_teachers.tar
    echo "downloading $URL"
    if command -v wget >/dev/null; then
        wget -q -O "$TAR" "$URL"
    elif command -v curl >/dev/null; then
        curl -fsSL -o "$TAR" "$URL"
    else
        echo "neither wget nor curl found: download $URL and pass it as TAR" >&2
        exit 1
    fi
fi
[ -f "$TAR" ] || { echo "$TAR: no such file" >&2; exit 1; }
TAR=$(cd "$(dirname "$TAR")" && pwd)/$(basename "$TAR")
members=$(tar -tf "$TAR") || { echo "$TAR: not a tar archive" >&2; exit 1; }

# Check every teacher is in the archive before converting any.
conversions=""
for pair in $todo; do
    name=${pair%%:*}
    model=${pair#*:}
    member=$(printf '%s\n' "$members" |
        grep -E "(^|/)${name}_vanilla/ckpt_epoch_240\.pth$" | head -n 1 || true)
    if [ -z "$member" ]; then
        echo "$TAR has no cifar_teachers/${name}_vanilla/ckpt_epoch_240.pth" \
            "(the $name teacher); is it mdistiller's cifar_teachers.tar?" >&2
        exit 1
    fi
    conversions="$conversions $WORK/$member:$model"
done

for conversion in $conversions; do
    src=${conversion%:*}
    tar -xf "$TAR" -C "$WORK" "${src#"$WORK"/}"
done
mkdir -p "$OUT_DIR"
# One Python process for all conversions: the stack imports once.
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" - "$REPO" "$OUT_DIR" $conversions <<'EOF'
import importlib.util
import os.path as osp
import sys

repo, out_dir, conversions = sys.argv[1], sys.argv[2], sys.argv[3:]
tool_path = osp.join(repo, 'tools', 'model_converters',
                     'repdistiller_to_mmpretrain.py')
spec = importlib.util.spec_from_file_location('converter', tool_path)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

from mmengine.config import Config  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

for conversion in conversions:
    member, model = conversion.rsplit(':', 1)
    dst = osp.normpath(osp.join(out_dir, f'{model}.pth'))
    tool.main([member, dst, '--model', model])
    # The converter checked every key; load the written file as a run does.
    config = osp.join(tool.CONFIG_DIR, f'{model}.py')
    load_checkpoint(MODELS.build(Config.fromfile(config).model), dst,
                    map_location='cpu', strict=True, logger='silent')
    print(f'{dst} loads strictly into {config}')
EOF
