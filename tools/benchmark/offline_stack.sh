# Sourced by the GPU scripts (tools/benchmark/gpu_check.sh,
# projects/cifar10_images/run_gpu.sh) from the repository root, with `tool`
# set to the script's name for its messages: resolves $PYTHON (default
# python3), puts the repository's loca_mm first on PYTHONPATH and, where that
# Python lacks the OpenMMLab stack, installs the wheels that
# tools/benchmark/prepare_gpu_check.sh wrote into .gpu_wheels/ (only the
# packages it lacks, offline) into a temporary folder put on the path, removed
# when the script exits.
PYTHON=$(command -v "${PYTHON:-python3}") || {
    echo "$tool: no ${PYTHON:-python3} on PATH; set PYTHON" >&2
    exit 2
}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c 'import mmengine, mmcv, mmpretrain, mmrazor' 2>/dev/null; then
    if [ ! -d .gpu_wheels ]; then
        echo "$tool: $PYTHON lacks the OpenMMLab stack and .gpu_wheels/ is" \
            "missing: run tools/benchmark/prepare_gpu_check.sh where pip reaches" \
            "PyPI, and bring .gpu_wheels/ along" >&2
        exit 2
    fi
    # The wheels of distributions this Python lacks (setuptools: where it
    # has no pkg_resources, which mmengine needs). loca_mm's wheel is for
    # installs elsewhere: what runs is the repository's loca_mm and
    # configs, first on the path.
    mapfile -t missing < <("$PYTHON" - .gpu_wheels/*.whl <<'PY'
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
PY
    )
    if [ ${#missing[@]} -eq 0 ]; then
        echo "$tool: every package of .gpu_wheels/ is there, yet the" \
            "stack does not import:" >&2
        "$PYTHON" -c 'import mmengine, mmcv, mmpretrain, mmrazor'
        exit 2
    fi
    echo "$tool: installing ${#missing[@]} wheels from .gpu_wheels/"
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-index \
        --no-deps --no-compile --target "$scratch/site" "${missing[@]}"
    export PYTHONPATH="$PYTHONPATH:$scratch/site"
fi
