"""The decoder's canonical batch-norm rule equals folding the batch norms into their convs."""

import pytest
import torch

from twdeploy.model import Segmenter, fold_batchnorm


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("arch", ["resnet_mini", "vgg_mini_bn"])
def test_canonical_rule_equals_the_folded_model(arch):
    torch.manual_seed(0)
    model = Segmenter(arch, 4).double().train()
    with torch.no_grad():  # running statistics away from their initial values
        for _ in range(3):
            model.encoder(torch.rand(4, 3, 32, 32, dtype=torch.float64))
    model.eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        folded = fold_batchnorm(model)(x)[1]
        separate = model(x)[1]
        model.bn_rule = "canonical"
        canonical = model(x)[1]
    assert _rel(canonical, folded) < 1e-9
    assert _rel(separate, folded) > 1e-6  # the reference's rule is a different one


def test_canonical_rule_trains_the_batch_norm_scale():
    torch.manual_seed(0)
    model = Segmenter("vgg_mini_bn", 3, bn_rule="canonical").train()
    _, heatmaps = model(torch.rand(2, 3, 32, 32))
    heatmaps.square().sum().backward()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="bn_rule"):
        Segmenter("vgg_mini_bn", 3, bn_rule="fused")
