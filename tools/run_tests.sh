#!/usr/bin/env bash
# Set up the environment (tools/setup_env.sh) and run the test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k losses`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
VENV=${LOCA_MM_VENV:-$ROOT/.venv}
cd "$ROOT"
# One worker per CPU (pytest-xdist), each taking whole modules, so that a
# module's fixtures train once.
exec "$VENV/bin/python" -m pytest -n logical --dist loadscope \
    --no-loadscope-reorder tests "$@"
