#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment with the pinned stack.
#
#   bash tools/setup_env.sh            # .venv in the repository root
#   LOCA_MM_VENV=/path/to/venv bash tools/setup_env.sh
#
# Idempotent: a stamp of the requirement files makes a second run a no-op.
# torch is installed first, on its own and pinned, because anything that
# asks for torch before it is installed pulls a multi-GB CUDA build.
# Where apt is available (as root), Debian's Fashion-MNIST package, the
# data of the demo, is installed too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LOCA_MM_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.loca_mm_requirements"
wanted=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
    echo "[setup] installing the pinned stack (about a minute on a fresh machine)"
    $PIP install -q --upgrade pip
    $PIP install -q "$(grep -E '^torch==' "$ROOT/requirements/runtime.txt")"
    requirement_args=()
    for file in runtime tests llm; do
        [ -f "$ROOT/requirements/$file.txt" ] && requirement_args+=(-r "$ROOT/requirements/$file.txt")
    done
    $PIP install -q "${requirement_args[@]}"
    if [ -f "$ROOT/requirements/nodeps.txt" ]; then
        # Packages installed without their own deps (requirements/nodeps.txt).
        $PIP install -q --no-deps -r "$ROOT/requirements/nodeps.txt"
    fi
    $PIP install -q --no-deps -e "$ROOT"
    echo "$wanted" > "$stamp"
fi

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null \
        && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian's dataset-fashion-mnist"
    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 \
            && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
        || echo "[setup] could not install dataset-fashion-mnist; the demo will use mmpretrain's download"
fi
echo "[setup] ready: $VENV"
