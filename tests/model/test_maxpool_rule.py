"""The max-pool rule equals the one-hot ConvTranspose scatter it replaced, bit for bit in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.model.maxpool_reference import onehot_maxpool2d
from twdeploy.model import rules

POOLS = [  # kernel, stride, padding: ResNet stem, VGG, overlapping stride 1, gaps, asymmetric
    ((3, 3), (2, 2), (1, 1)),
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (3, 3), (1, 1)),
    ((2, 2), (1, 1), (0, 0)),
    ((3, 3), (1, 1), (1, 1)),
    ((4, 4), (2, 2), (2, 1)),
    ((1, 1), (2, 2), (0, 0)),
    ((2, 3), (3, 2), (1, 0)),
    ((3, 1), (2, 2), (1, 0)),
]


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOLS)
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (16, 13)])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_the_one_hot_scatter(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    size: tuple[int, int],
    ties: bool,
    scaled: bool,
    channels_last: bool,
) -> None:
    torch.manual_seed(0)
    a = torch.randn(2, 3, *size, dtype=torch.float64)
    if ties:
        a = a.round()  # many equal maxima: the first in scan order must win
    y = F.max_pool2d(a, kernel, stride, padding)
    c = torch.randn(2, 4, *y.shape[1:], dtype=torch.float64)
    shared = torch.randn_like(y)
    expected = onehot_maxpool2d(a, y, rules.Scaled(c, shared) if scaled else c, kernel, stride, padding)
    if channels_last:
        a, y, shared = (t.contiguous(memory_format=torch.channels_last) for t in (a, y, shared))
        c = rules.unfold(rules.fold(c).contiguous(memory_format=torch.channels_last), 4)
    new = rules.maxpool2d(a, y, rules.Scaled(c, shared) if scaled else c, kernel, stride, padding)
    assert torch.equal(new, expected)
    if channels_last:  # the layout is kept: channels vary fastest, so the next conv reorders nothing
        assert new.stride(2) == 1


def test_equals_the_gradient_of_max_pool() -> None:
    """``R * d maxpool(a) / d a`` per class, ties included (torch's first max)."""
    torch.manual_seed(1)
    a = torch.randn(2, 3, 9, 9, dtype=torch.float64).round().requires_grad_()
    y = F.max_pool2d(a, 3, 2, 1)
    r = torch.randn(2, 4, *y.shape[1:], dtype=torch.float64)
    new = rules.maxpool2d(a.detach(), y.detach(), r, (3, 3), (2, 2), (1, 1))
    for k in range(4):
        (grad,) = torch.autograd.grad(y, a, r[:, k], retain_graph=True)
        torch.testing.assert_close(new[:, k], grad, rtol=1e-15, atol=1e-15)
