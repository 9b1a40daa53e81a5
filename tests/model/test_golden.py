"""Heatmaps reproduce the reference implementation's golden outputs (../shared/golden)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from twdeploy import Segmenter

CASES = [("resnet18", "resnet18_128_eval"), ("resnet50", "resnet50_128_eval"), ("vgg16", "vgg16_224_eval")]


def load_recipe(golden_dir: Path):
    spec = importlib.util.spec_from_file_location("golden_recipe", golden_dir / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(golden_dir: Path, arch: str, stem: str, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray, dict]:
    recipe = load_recipe(golden_dir)
    reference = dict(np.load(golden_dir / f"{stem}.npz"))
    n, size = reference["images"].shape[0], reference["images"].shape[-1]
    seg = Segmenter(arch, num_classes=21, eps=1e-8 if dtype == torch.float64 else 1e-6, class_chunk=7)
    recipe.fill_(seg.encoder)
    seg = seg.to(dtype).eval()
    with torch.no_grad():
        logits, heatmaps = seg(recipe.images(n, size).to(dtype))
    return logits.double().numpy(), heatmaps.double().numpy(), reference


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize(("arch", "stem"), CASES)
def test_float64_matches_golden(golden_dir: Path, arch: str, stem: str) -> None:
    logits, heatmaps, ref = run(golden_dir, arch, stem, torch.float64)
    np.testing.assert_allclose(logits, ref["logits"], rtol=1e-6, atol=1e-6 * np.abs(ref["logits"]).max())
    assert rel_l2(heatmaps, ref["heatmaps"]) <= 5e-4
    assert (heatmaps.argmax(1) == ref["heatmaps"].argmax(1)).mean() >= 0.999


def test_float32_agrees_with_golden(golden_dir: Path) -> None:
    _, heatmaps, ref = run(golden_dir, "resnet18", "resnet18_128_eval", torch.float32)
    assert rel_l2(heatmaps, ref["heatmaps"]) <= 2e-2
    assert (heatmaps.argmax(1) == ref["heatmaps"].argmax(1)).mean() >= 0.995
