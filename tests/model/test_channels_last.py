"""A channels-last input gives the same heatmaps, and the decoder keeps the layout through every rule."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from twdeploy.model import Segmenter, fold_batchnorm


class Recorder(TorchDispatchMode):
    """Records the input of every convolution (the conv rule runs as Conv or ConvTranspose) and every reorder."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_inputs: list[torch.Tensor] = []
        self.copies: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default:
            self.conv_inputs.append(args[0])
        if func in (torch.ops.aten.clone.default, torch.ops.aten.copy_.default):
            self.copies.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("arch", ["resnet18", "vgg_mini", "efficientnet_lite0"])
@pytest.mark.parametrize("bn_rule", ["separate", "canonical"])
def test_same_heatmaps_and_no_reordering(arch: str, bn_rule: str) -> None:
    torch.manual_seed(0)
    model = fold_batchnorm(Segmenter(arch, num_classes=4, bn_rule=bn_rule).eval()).double()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    channels_last = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        logits, heatmaps = model(images)
        recorder = Recorder()
        with recorder:
            logits_cl, heatmaps_cl = model(channels_last)
    torch.testing.assert_close(logits_cl, logits, rtol=1e-12, atol=1e-12)
    scale = heatmaps.abs().max()
    torch.testing.assert_close(heatmaps_cl / scale, heatmaps / scale, rtol=0, atol=1e-9)
    assert recorder.conv_inputs, "no convolution ran"
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in recorder.conv_inputs)
    # Only the encoder's last feature map (at most 4x4 at 64 px) is reordered, at the pooled head.
    assert all(shape[-2] * shape[-1] <= 16 for shape in recorder.copies), recorder.copies
