#!/usr/bin/env bash
# Install (see install.sh) and run the linter and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-ACTIVE}"
ruff check .
python -m pytest "$@"
