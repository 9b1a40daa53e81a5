"""Large CPU images run channels-last (unless TWDEPLOY_CHANNELS_LAST=0); small ones and other ranks as given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twdeploy.model import Segmenter, fold_batchnorm
from twdeploy.model.card import ModelCard
from twdeploy.runtime import layout
from twdeploy.runtime.torch_backend import TorchBackend
from twdeploy.training.evaluate import evaluate


def test_cpu_images_become_channels_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(layout.VARIABLE, raising=False)
    images = torch.rand(2, 3, 256, 256)
    out = layout.preferred_layout(images)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.equal(out, images)
    assert layout.preferred_layout(out) is out  # already channels-last: no copy
    assert "channels-last" in layout.describe(256, 256)
    assert layout.rule() == "channels-last for CPU images of 256x256 px or more, else NCHW"


def test_small_images_other_ranks_and_the_opt_out_keep_the_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(layout.VARIABLE, raising=False)
    small = torch.rand(2, 3, 64, 64)
    assert layout.preferred_layout(small) is small
    assert "NCHW" in layout.describe(64, 64)
    flat = torch.rand(2, 3, 65536)
    assert layout.preferred_layout(flat) is flat
    monkeypatch.setenv(layout.VARIABLE, "0")
    images = torch.rand(2, 3, 256, 256)
    assert layout.preferred_layout(images) is images
    assert "NCHW" in layout.describe(256, 256)
    assert layout.rule() == "NCHW (TWDEPLOY_CHANNELS_LAST=0)"


def test_torch_backend_runs_channels_last_with_the_same_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = fold_batchnorm(Segmenter("vgg_mini", num_classes=3).eval())
    card = ModelCard(arch="vgg_mini", class_names=("background", "a", "b"), image_size=(256, 256))
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    batch = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    monkeypatch.delenv(layout.VARIABLE, raising=False)
    fast = TorchBackend.from_segmenter(model, card).infer(batch)
    monkeypatch.setenv(layout.VARIABLE, "0")
    plain = TorchBackend.from_segmenter(model, card).infer(batch)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    assert seen[1].is_contiguous()
    np.testing.assert_allclose(fast.logits, plain.logits, rtol=1e-5, atol=1e-5)
    scale = np.abs(plain.heatmaps).max()
    np.testing.assert_allclose(fast.heatmaps / scale, plain.heatmaps / scale, rtol=0, atol=1e-3)


def test_evaluation_runs_the_torch_backends_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """``twdeploy eval`` of a checkpoint (and validation in training) feeds the model as the torch backend does."""
    monkeypatch.delenv(layout.VARIABLE, raising=False)
    model = Segmenter("vgg_mini", num_classes=3)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    batch = {
        "image": torch.rand(1, 3, 256, 256),
        "mask": torch.zeros(1, 256, 256, dtype=torch.long),
        "has_mask": torch.ones(1, dtype=torch.bool),
        "tags": torch.zeros(1, 3),
    }
    evaluate(model, [batch], ["background", "a", "b"], torch.device("cpu"), amp=False)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
