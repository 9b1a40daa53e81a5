#!/usr/bin/env bash
# Install twdeploy (CPU flavour) into ./.venv, or into the active virtual environment.
# torch is installed first, pinned, so pip does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${TWDEPLOY_TORCH_VERSION:-2.13.0}"
python -m pip install -q -e ".[cpu,dev]"
python -c "import cv2"  # opencv-python-headless needs no libGL: no apt step
