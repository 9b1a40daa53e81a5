"""LRP-gamma for the convs below the input layer (zennit's ``Gamma``), checked against explicit loops."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from twdeploy import Segmenter
from twdeploy.errors import TwdeployError
from twdeploy.model import fold_batchnorm, rules
from twdeploy.model.card import ModelCard
from twdeploy.model.lrp import DecoderContext, _conv_relevance
from twdeploy.training.config import TrainConfig


def _gamma_by_loops(a: Tensor, weight: Tensor, bias: Tensor, r_out: Tensor, gamma: float, padding: int) -> Tensor:
    """Input relevance (C_in, H, W) of one stride-1 conv: ``R_i = sum_j a_i w'_ij / stab(z'_j) R_j``.

    ``w' = w + gamma * max(w, 0)``, ``z'_j = sum_i a_i w'_ij + b_j + gamma * max(b_j, 0)`` (Montavon et al. 2019).
    """
    c_out, c_in, k, _ = weight.shape
    size = a.shape[1]
    w = weight + gamma * weight.clamp(min=0)
    b = bias + gamma * bias.clamp(min=0)
    r_in = torch.zeros_like(a)
    for o in range(c_out):
        for oy in range(r_out.shape[1]):
            for ox in range(r_out.shape[2]):
                terms = []
                for c in range(c_in):
                    for i in range(k):
                        for j in range(k):
                            y, x = oy - padding + i, ox - padding + j
                            if 0 <= y < size and 0 <= x < size:
                                terms.append((c, y, x, float(a[c, y, x] * w[o, c, i, j])))
                z = sum(t for *_, t in terms) + float(b[o])
                z += 1e-12 if z >= 0 else -1e-12
                for c, y, x, t in terms:
                    r_in[c, y, x] += t / z * r_out[o, oy, ox]
    return r_in


@pytest.mark.parametrize("gamma", [0.0, 0.25, 2.0])
def test_gamma_rule_equals_the_explicit_sum(gamma: float) -> None:
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    a = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    z = torch.nn.functional.conv2d(a, weight, bias, 1, 1)
    r = torch.randn(2, 3, *z.shape[1:], dtype=torch.float64)  # 2 images, 3 classes
    got = rules.materialize(rules.gamma_conv2d(a, z, r, weight, bias, gamma, (1, 1), (1, 1), (1, 1), 1, 1e-12))
    for n in range(2):
        for k in range(3):
            want = _gamma_by_loops(a[n], weight, bias, r[n, k], gamma, 1)
            torch.testing.assert_close(got[n, k], want, rtol=1e-9, atol=1e-12)


def test_large_gamma_keeps_the_sign_of_the_relevance() -> None:
    """Non-negative inputs, positive relevance above: gamma -> inf is the z+ rule, whose relevance is non-negative."""
    torch.manual_seed(0)
    weight = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    a = torch.rand(1, 4, 8, 8, dtype=torch.float64)
    z = torch.nn.functional.conv2d(a, weight, None, 1, 1)
    r = torch.rand(1, 1, *z.shape[1:], dtype=torch.float64)
    geometry = ((1, 1), (1, 1), (1, 1), 1, 1e-9)
    epsilon = rules.materialize(rules.conv2d(a, z, r, weight, *geometry))
    large = rules.materialize(rules.gamma_conv2d(a, z, r, weight, None, 1e6, *geometry))
    assert epsilon.min() < -1e-3 * epsilon.abs().max()  # LRP-epsilon's relevance cancels
    assert large.min() > -1e-5 * large.abs().max()


@pytest.mark.parametrize("arch", ["vgg_mini_bn", "resnet_mini"])
def test_gamma_changes_the_heatmaps_of_the_whole_net(arch: str) -> None:
    torch.manual_seed(0)
    model = Segmenter(arch, 4, eps=1e-9, bn_rule="canonical").double().eval()
    images = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        _, h_eps = model(images)
        model.gamma = 0.25
        _, h_gamma = model(images)
    assert h_gamma.shape == h_eps.shape and torch.isfinite(h_gamma).all()
    assert (h_gamma - h_eps).norm() > 1e-3 * h_eps.norm()


@pytest.mark.parametrize("arch", ["vgg_mini_bn", "resnet_mini", "efficientnet_lite0"])
def test_folded_model_equals_the_canonical_gamma_rule(arch: str) -> None:
    """The exported model folds batch norms; with gamma the merged bias enters ``z'``, so both must agree."""
    torch.manual_seed(0)
    model = Segmenter(arch, 3, eps=1e-9, bn_rule="canonical", gamma=0.25).double().train()
    with torch.no_grad():  # running statistics and biases away from their initial values
        for _ in range(3):
            model.encoder(torch.rand(4, 3, 64, 64, dtype=torch.float64))
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.bias.normal_(0.0, 0.5)
    model.eval()
    images = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        _, h_canonical = model(images)
        folded = fold_batchnorm(model)
        assert folded.gamma == 0.25
        _, h_folded = folded(images)
        model.gamma = 0.0
        _, h_eps = model(images)
    torch.testing.assert_close(h_folded, h_canonical, rtol=1e-7, atol=1e-9 * float(h_canonical.abs().max()))
    assert (h_canonical - h_eps).norm() > 1e-3 * h_eps.norm()


def test_input_layer_keeps_its_rule() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    a = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    z = conv(a).detach()
    r = torch.randn(1, 2, *z.shape[1:], dtype=torch.float64)
    as_input = DecoderContext(1e-9, input_layer=conv, gamma=1.0)
    inner = DecoderContext(1e-9, input_layer=None, gamma=1.0)
    plain = rules.materialize(rules.conv2d(a, z, r, conv.weight, (1, 1), (1, 1), (1, 1), 1, 1e-9))
    got_input = rules.materialize(_conv_relevance(conv, a, z, r, conv.weight, conv.bias, as_input))
    got_inner = rules.materialize(_conv_relevance(conv, a, z, r, conv.weight, conv.bias, inner))
    torch.testing.assert_close(got_input, plain)
    assert (got_inner - plain).norm() > 1e-3 * plain.norm()


def test_card_carries_gamma() -> None:
    card = ModelCard("vgg_mini", ("background", "a"), (64, 64), gamma=0.25)
    again = ModelCard.from_json(card.to_json())
    assert again.gamma == 0.25 and again.build().gamma == 0.25
    version_2 = {k: v for k, v in card.to_dict().items() if k != "gamma"} | {"version": 2}
    assert ModelCard.from_dict(version_2).gamma == 0.0


def test_bad_gamma_is_refused() -> None:
    with pytest.raises(ValueError, match="gamma"):
        Segmenter("vgg_mini", 3, gamma=-0.1)
    with pytest.raises(TwdeployError, match="--gamma must be"):
        TrainConfig(gamma=-1.0, bn_rule="canonical").validate()
    with pytest.raises(TwdeployError, match="--bn-rule canonical"):
        TrainConfig(gamma=0.25).validate()
    assert TrainConfig(gamma=0.25, bn_rule="canonical").validate().gamma == 0.25


@pytest.mark.parametrize("saved_requires_grad", [False, True])
def test_modified_preactivation_is_as_differentiable_as_the_saved_activation(saved_requires_grad: bool) -> None:
    """Under ``--heatmap-grad tied`` (saved activations detached) the weight's gradient runs through
    the transposed weights only: ``z'`` is held fixed like ``a / stab(z)``; with ``full`` it is not."""
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    a = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=saved_requires_grad)
    z = torch.nn.functional.conv2d(a, weight, None, 1, 1)
    z = z if saved_requires_grad else z.detach()
    r = torch.randn(1, 2, *z.shape[1:], dtype=torch.float64)
    geometry = ((1, 1), (1, 1), (1, 1), 1, 1e-9)
    got = rules.materialize(rules.gamma_conv2d(a, z, r, weight, None, 0.5, *geometry))
    (grad,) = torch.autograd.grad(got.square().sum(), weight)
    fixed_z = (z + 0.5 * torch.nn.functional.conv2d(a, weight.clamp(min=0), None, 1, 1)).detach()
    held = rules.materialize(rules.conv2d(a, fixed_z, r, weight + 0.5 * weight.clamp(min=0), *geometry))
    (grad_held,) = torch.autograd.grad(held.square().sum(), weight)
    if saved_requires_grad:
        assert (grad - grad_held).norm() > 1e-3 * grad_held.norm()
    else:
        torch.testing.assert_close(grad, grad_held)
