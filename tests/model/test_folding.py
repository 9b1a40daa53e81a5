"""fold_batchnorm: canonical LRP-epsilon (batch norm merged into the conv before it).

The reference below is written from method.md, independently of twdeploy's rules: batch
norm is folded by hand, and each linear layer's rule ``R_in = a * W^T (R / stab(z))`` is
taken as ``a`` times autograd's vector-Jacobian product of the layer (the bias drops out).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twdeploy import Segmenter
from twdeploy.model import fold_batchnorm
from twdeploy.model.backbones import ResNet

EPS = 1e-6


def stab(z: Tensor) -> Tensor:
    return z + EPS * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def vjp(fn: Callable[[Tensor], Tensor], a: Tensor, v: Tensor) -> Tensor:
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(fn(a), a, v)
    return g


def epsilon_rule(fn: Callable[[Tensor], Tensor], a: Tensor, r: Tensor) -> Tensor:
    return a * vjp(fn, a, r / stab(fn(a)))


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Callable[[Tensor], Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    return lambda a: F.conv2d(a, weight, bias, conv.stride, conv.padding)


def block_layers(block: nn.Module) -> list[Callable[[Tensor], Tensor]]:
    names = ["1", "2", "3"] if hasattr(block, "conv3") else ["1", "2"]
    return [folded_conv(getattr(block, f"conv{i}"), getattr(block, f"bn{i}")) for i in names]


def block_relevance(block: nn.Module, x: Tensor, r: Tensor) -> Tensor:
    """Forward the block, then split ``r`` between the two summands and push each back."""
    inputs, h = [], x
    layers = block_layers(block)
    for i, layer in enumerate(layers):
        inputs.append(h)
        h = layer(h) if i == len(layers) - 1 else F.relu(layer(h))
    shortcut = folded_conv(*block.downsample) if block.downsample is not None else None
    s = shortcut(x) if shortcut is not None else x
    total = h + s
    r_f, r_s = h / stab(total) * r, s / stab(total) * r
    for layer, a in zip(reversed(layers), reversed(inputs), strict=True):
        r_f = epsilon_rule(layer, a, r_f)
    return r_f + (epsilon_rule(shortcut, x, r_s) if shortcut is not None else r_s)


def canonical_heatmaps(net: ResNet, x: Tensor, cls: int) -> Tensor:
    """Canonical LRP-epsilon heatmap of class ``cls`` for a torchvision-layout ResNet."""
    stem = folded_conv(net.conv1, net.bn1)
    a_pool = F.relu(stem(x))
    pool = lambda a: F.max_pool2d(a, 3, 2, 1)  # noqa: E731
    block_inputs, h = [], pool(a_pool)
    blocks = [b for i in range(net.stages) for b in getattr(net, f"layer{i + 1}")]
    for block in blocks:
        block_inputs.append(h)
        h = block(h)
    mean = lambda a: a.mean(dim=(2, 3))  # noqa: E731
    fc = lambda a: F.linear(a, net.fc.weight, net.fc.bias)  # noqa: E731
    feats = mean(h)
    logits = fc(feats)
    r = epsilon_rule(fc, feats, logits * F.one_hot(torch.tensor(cls), logits.shape[1]).to(x.dtype))
    r = epsilon_rule(mean, h, r)
    for block, a in zip(reversed(blocks), reversed(block_inputs), strict=True):
        r = block_relevance(block, a, r)
    r = vjp(pool, a_pool, r)  # winner-take-all, windows summing: the gradient of the pool
    return epsilon_rule(stem, x, r).sum(dim=1)


def randomise_batch_norms(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_folded_heatmaps_equal_canonical_lrp(arch: str) -> None:
    torch.manual_seed(0)
    seg = Segmenter(arch, num_classes=4, eps=EPS).double().eval()
    randomise_batch_norms(seg)
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits, heatmaps = fold_batchnorm(seg)(x)
        torch.testing.assert_close(logits, seg.encoder(x), rtol=1e-10, atol=1e-10)
        for c in range(4):
            expected = canonical_heatmaps(seg.encoder, x, c)
            assert float((heatmaps[:, c] - expected).norm() / expected.norm()) <= 1e-6, f"class {c}"


def test_folding_copies_and_removes_every_batch_norm() -> None:
    seg = Segmenter("resnet_mini", num_classes=3).train()
    folded = fold_batchnorm(seg)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in seg.modules()) > 0 and seg.training
    assert not folded.training


def test_folded_and_separate_batch_norm_agree_as_eps_shrinks() -> None:
    """The separate-BN rule differs from canonical LRP by O(eps / |z|) (method.md, 1.1)."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    gaps = []
    for eps in (1e-6, 1e-9):
        seg = Segmenter("resnet18", num_classes=3, eps=eps).double().eval()
        torch.manual_seed(1)
        randomise_batch_norms(seg)
        with torch.no_grad():
            separate, folded = seg(x)[1], fold_batchnorm(seg)(x)[1]
        gaps.append(float((separate - folded).norm() / folded.norm()))
    assert gaps[1] < 1e-3 * gaps[0]
