"""The input layer's rules ``flat`` and ``wsquare`` (zennit's Flat / WSquare), checked against explicit loops."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from twdeploy import Segmenter
from twdeploy.model import fold_batchnorm
from twdeploy.model.card import ModelCard


def _spread_by_loops(rule: str, weight: Tensor, r_out: Tensor, size: int, stride: int, padding: int) -> Tensor:
    """Input relevance (C_in, H, W) of one 2-D conv, each output's relevance shared out over its receptive field.

    The share of input (c, y, x) is 1 (``flat``) or ``w**2`` (``wsquare``) over the sum of the shares of the
    in-image positions: zero padding receives nothing.
    """
    c_out, c_in, k, _ = weight.shape
    r_in = torch.zeros(c_in, size, size, dtype=torch.float64)
    for o in range(c_out):
        for oy in range(r_out.shape[1]):
            for ox in range(r_out.shape[2]):
                cells = []
                for c in range(c_in):
                    for i in range(k):
                        for j in range(k):
                            y, x = oy * stride - padding + i, ox * stride - padding + j
                            if 0 <= y < size and 0 <= x < size:
                                share = 1.0 if rule == "flat" else float(weight[o, c, i, j]) ** 2
                                cells.append((c, y, x, share))
                total = sum(share for *_, share in cells)
                for c, y, x, share in cells:
                    r_in[c, y, x] += r_out[o, oy, ox] * share / total
    return r_in


@pytest.mark.parametrize("rule", ["flat", "wsquare"])
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (2, 0)])
def test_input_rule_equals_explicit_spread(rule: str, stride: int, padding: int) -> None:
    from twdeploy.model import rules

    torch.manual_seed(0)
    size = 7
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    image = torch.rand(2, 3, size, size, dtype=torch.float64)
    out = torch.nn.functional.conv2d(image, weight, None, stride, padding)
    r = torch.randn(2, 5, *out.shape[1:], dtype=torch.float64)  # 2 images, 5 classes
    got = rules.input_conv2d(rule, image, r, weight, (stride, stride), (padding, padding), (1, 1), 1, 1e-12)
    for n in range(2):
        for k in range(5):
            want = _spread_by_loops(rule, weight, r[n, k], size, stride, padding)
            torch.testing.assert_close(got[n, k], want, rtol=1e-10, atol=1e-12)
    # Conservation: nothing is lost to the padding or to the pixel values.
    torch.testing.assert_close(got.sum(dim=(2, 3, 4)), r.sum(dim=(2, 3, 4)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ["vgg_mini_bn", "resnet_mini"])
def test_flat_heatmaps_differ_from_epsilon_only_below_the_first_conv(arch: str) -> None:
    """The two models share every weight; flat's heatmaps are epsilon's relevance at the first conv's output, spread."""
    torch.manual_seed(0)
    size = 64
    eps_model = Segmenter(arch, 4, eps=1e-12).double().eval()
    flat_model = Segmenter(arch, 4, eps=1e-12, input_rule="flat").double().eval()
    flat_model.load_state_dict(eps_model.state_dict())
    images = torch.rand(2, 3, size, size, dtype=torch.float64)
    _, h_eps = eps_model(images)
    _, h_flat = flat_model(images)
    assert h_flat.shape == h_eps.shape
    assert (h_flat - h_eps).norm() > 1e-3 * h_eps.norm()
    # The first conv's rule differs, the relevance reaching it does not: same totals per class (conservation of both
    # rules at that layer holds up to the bias share, which both drop alike).
    first = eps_model.input_layer()
    if first.bias is None:  # the conv rule conserves exactly only without bias
        torch.testing.assert_close(h_flat.sum(dim=(2, 3)), h_eps.sum(dim=(2, 3)), rtol=1e-6, atol=1e-9)


def test_input_layer_of_a_padded_stem_is_its_conv() -> None:
    """EfficientNet pads before its stem conv: the rule applies to that conv (it reads the padded image)."""
    model = Segmenter("efficientnet_lite0", 3, input_rule="flat")
    assert model.input_layer().in_channels == 3 and model.input_layer().stride == (2, 2)


def test_folded_model_keeps_the_input_rule() -> None:
    torch.manual_seed(0)
    model = Segmenter("vgg_mini_bn", 3, input_rule="flat").double().eval()
    images = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    folded = fold_batchnorm(model)
    assert folded.input_rule == "flat" and folded.input_layer() is not model.input_layer()
    _, h = model(images)
    _, h_folded = folded(images)
    assert torch.corrcoef(torch.stack([h.flatten(), h_folded.flatten()]))[0, 1] > 0.999


def test_card_carries_the_input_rule() -> None:
    card = ModelCard("vgg_mini", ("background", "a"), (64, 64), input_rule="wsquare")
    again = ModelCard.from_json(card.to_json())
    assert again.input_rule == "wsquare" and again.build().input_rule == "wsquare"
    version_1 = {k: v for k, v in card.to_dict().items() if k != "input_rule"} | {"version": 1}
    old = ModelCard.from_dict(version_1)
    assert old.input_rule == "epsilon"


def test_unknown_input_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="input_rule"):
        Segmenter("vgg_mini", 3, input_rule="zbox")
