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
PYTHON=$(command -v "${PYTHON:-python3}") || {
    echo "gpu_check: no ${PYTHON:-python3} on PATH; set PYTHON" >&2
    exit 2
}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c 'import mmengine, mmcv, mmpretrain, mmrazor' 2>/dev/null; then
    if [ ! -d .gpu_wheels ]; then
        echo "gpu_check: $PYTHON lacks the OpenMMLab stack and .gpu_wheels/ is" \
            "missing: run tools/benchmark/prepare_gpu_check.sh where pip reaches" \
            "PyPI, and bring .gpu_wheels/ along" >&2
        exit 2
    fi
    # The wheels of distributions this Python lacks (setuptools: where it
    # has no pkg_resources, which mmengine needs). loca_mm's wheel is for
    # installs elsewhere: what is checked is the repository's loca_mm and
    # configs, first on the path.
    mapfile -t missing < <("$PYTHON" - .gpu_wheels/*.whl <<'EOF'
import importlib.metadata
import importlib.util
import sys

for wheel in sys.argv[1:]:
    name = wheel.rsplit('/', 1)[-1].split('-')[0]
    if name == 'loca_mm':
        continue
    if name == 'setuptools':
        if importlib.util.find_spec('pkg_resources') is None:
            print(wheel)
        continue
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        print(wheel)
EOF
    )
    if [ ${#missing[@]} -eq 0 ]; then
        echo "gpu_check: every package of .gpu_wheels/ is there, yet the" \
            "stack does not import:" >&2
        "$PYTHON" -c 'import mmengine, mmcv, mmpretrain, mmrazor'
        exit 2
    fi
    echo "gpu_check: installing ${#missing[@]} wheels from .gpu_wheels/"
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-index \
        --no-deps --no-compile --target "$scratch/site" "${missing[@]}"
    export PYTHONPATH="$PYTHONPATH:$scratch/site"
fi

"$PYTHON" -c '
import torch
cuda = torch.cuda.is_available()
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"GPU {torch.cuda.get_device_name(0) if cuda else None}")'
# gpu_check.py keeps to its own time limit and writes what finished; this
# stops it if it hangs.
timeout -k 10 600 "$PYTHON" tools/benchmark/gpu_check.py "$@"
