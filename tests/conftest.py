"""Shared fixtures: paths to the read-only reference data beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
torch.set_num_threads(min(2, os.cpu_count() or 1))

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"


@pytest.fixture
def golden_dir() -> Path:
    """``../shared/golden`` beside the project; tests that need it skip where it is absent."""
    if not (GOLDEN / "recipe.py").exists():
        pytest.skip(f"golden reference files not found at {GOLDEN} (only on developer machines and CI)")
    return GOLDEN
