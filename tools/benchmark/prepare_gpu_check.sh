#!/usr/bin/env bash
# Wheels for tools/benchmark/gpu_check.sh on a GPU machine without network.
#
#   bash tools/benchmark/prepare_gpu_check.sh      # where pip reaches PyPI
#
# A GPU image brings Python 3.12 with CUDA PyTorch, numpy, opencv, matplotlib,
# Pillow, PyYAML and torchvision, but no OpenMMLab packages. This writes into
# .gpu_wheels/ (ignored by git, at most 40 MiB) mmengine, mmcv-lite,
# mmpretrain and mmrazor at the versions of requirements/runtime.txt, the
# pure-Python packages they import, setuptools < 82 (mmengine resolves
# `mmpretrain::` configs with its pkg_resources), and loca_mm itself (for an
# offline install elsewhere; gpu_check.sh checks the repository's own). All
# are pure-Python wheels, fetched as CPython 3.12 on manylinux x86-64 would
# take them; gpu_check.sh installs those the machine lacks. PYTHON (default
# python3) is the interpreter whose pip is used.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
DEST=.gpu_wheels
LIMIT_MIB=40
# Versions the suite passed with (tools/setup_env.sh's environment); the
# OpenMMLab pins and setuptools' range come from requirements/runtime.txt.
PURE_PYTHON=(
    addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0
    rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
    einops==0.8.2 mat4py==0.6.0 modelindex==0.0.2 model-index==0.1.11
    markdown==3.11.3 click==8.5.1 ordered-set==4.1.0 joblib==1.6.0
    importlib-metadata==10.2.0 zipp==4.1.2 lazy-importer==0.1.0 packaging==26.4
    cloudpickle==3.1.3
)
mapfile -t STACK < <(grep -oE '^(mmengine|mmcv-lite|mmpretrain|mmrazor)==[^ #]+|^setuptools[^ #]+' \
    requirements/runtime.txt)

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
pip=("$PYTHON" -m pip --disable-pip-version-check)
"${pip[@]}" download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version 3.12 --abi cp312 --platform manylinux2014_x86_64 \
    -d "$staging" "${STACK[@]}" "${PURE_PYTHON[@]}"
# loca_mm from a copy of the checkout's files: a build in place would pack
# what an earlier build left in build/lib.
mkdir "$staging/src"
git ls-files -z --cached --others --exclude-standard \
    | tar -cf - --null --ignore-failed-read -T - | tar -xf - -C "$staging/src"
"${pip[@]}" wheel -q --no-deps -w "$staging" "$staging/src"

# gpu_check.sh installs these on any Python; a compiled wheel would tie the
# folder to one interpreter.
compiled=$(find "$staging" -maxdepth 1 -name '*.whl' ! -name '*-none-any.whl')
if [ -n "$compiled" ]; then
    echo "prepare_gpu_check: not pure-Python: $compiled" >&2
    exit 1
fi
size_kib=$(du -ck "$staging"/*.whl | tail -1 | cut -f1)
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "prepare_gpu_check: $((size_kib / 1024)) MiB, over the ${LIMIT_MIB} MiB limit" >&2
    exit 1
fi
rm -rf "$DEST"
mkdir "$DEST"
mv "$staging"/*.whl "$DEST"/
echo "prepare_gpu_check: $(ls "$DEST" | wc -l) wheels, $((size_kib / 1024 + 1)) MiB in $DEST/"
