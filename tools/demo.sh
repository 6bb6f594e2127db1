#!/usr/bin/env bash
# The one-command demo: set up the environment if needed (tools/setup_env.sh:
# .venv with the pinned stack, Debian's Fashion-MNIST package where apt is
# available) and run the Fashion-MNIST project's demo,
# projects/fashion_mnist/demo.py. Arguments go to demo.py.
#
#   bash tools/demo.sh        # results in outputs/demo/
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
VENV=${LOCA_MM_VENV:-$ROOT/.venv}
cd "$ROOT"
exec "$VENV/bin/python" projects/fashion_mnist/demo.py "$@"
