"""Inference overwrites owned relevance tensors in place: the same heatmaps, nothing shared is touched.

Equal up to float64 rounding: the overlapping max-pool rule accumulates with a fused multiply-add.
"""

from __future__ import annotations

import pytest
import torch

from tests.model.nets import zoo
from twdeploy.model import Segmenter, fold_batchnorm, rules
from twdeploy.model.lrp import DecoderContext

NETS = zoo(num_classes=4)


def snapshot(saved: object) -> list[torch.Tensor]:
    """Copies of every tensor in a saved-activation tree."""
    if isinstance(saved, torch.Tensor):
        return [saved.clone()]
    if isinstance(saved, list | tuple):
        return [t for item in saved for t in snapshot(item)]
    return []


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("bn_rule", ["separate", "canonical"])
def test_in_place_inference_matches_out_of_place_and_keeps_the_saved_activations(name: str, bn_rule: str) -> None:
    net = NETS[name].double().eval()
    images = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    ctx = DecoderContext(bn_rule=bn_rule)
    logits, saved = net.lrp_forward(images)
    start = torch.eye(4, dtype=torch.float64).expand(3, 4, 4) * logits.detach().unsqueeze(1)
    with torch.enable_grad():  # autograd on: every rule computes out of place
        expected = net.lrp_relevance(saved, start.clone(), ctx)
    before = snapshot(saved)
    with torch.no_grad():
        got = net.lrp_relevance(saved, start.clone(), ctx)
        again = net.lrp_relevance(saved, start.clone(), ctx)
    scale = expected.abs().max()
    torch.testing.assert_close(got / scale, expected / scale, rtol=0, atol=1e-12)
    torch.testing.assert_close(again, got, rtol=0, atol=0)
    for old, new in zip(before, snapshot(saved), strict=True):
        torch.testing.assert_close(new, old, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["resnet18", "vgg_mini"])
def test_segmenter_heatmaps_equal_with_and_without_autograd(arch: str) -> None:
    torch.manual_seed(0)
    model = fold_batchnorm(Segmenter(arch, num_classes=5).eval()).double().requires_grad_(False)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        _, heatmaps = model(images)
    _, reference = model(images)  # autograd on (no parameter needs it, so the forward is the same): out of place
    scale = reference.abs().max()
    torch.testing.assert_close(heatmaps / scale, reference / scale, rtol=0, atol=1e-12)


def owned(shape: tuple[int, ...] = (2, 3, 4, 5, 5)) -> rules.Scaled:
    return rules.Scaled(torch.rand(shape), torch.rand(shape[:1] + shape[2:]), owned=True)


def test_divide_reuses_only_an_owned_tensor_without_autograd() -> None:
    z = torch.rand(2, 4, 5, 5) + 0.5
    r = owned()
    with torch.no_grad():
        assert rules.divide(r, z, 1e-6).data_ptr() == r.c.data_ptr()
        shared = rules.Scaled(r.c, r.a)
        assert rules.divide(shared, z, 1e-6).data_ptr() != r.c.data_ptr()
    assert rules.divide(owned(), z, 1e-6).data_ptr() != r.c.data_ptr()  # autograd on: out of place


def test_add_writes_into_the_owned_summand_and_tracing_never_does() -> None:
    r1 = owned()
    r2 = rules.Scaled(torch.rand_like(r1.c), r1.a)
    expected = r1.c + r2.c
    with torch.no_grad():
        total = rules.add(r2, r1)
    assert total.c.data_ptr() == r1.c.data_ptr() and total.owned
    torch.testing.assert_close(total.c, expected)

    def traced_add(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        return rules.add(rules.Scaled(c1, a, owned=True), rules.Scaled(c2, a)).c

    a = torch.rand(2, 4, 5, 5)
    with torch.no_grad():
        graph = torch.jit.trace(traced_add, (torch.rand(2, 3, 4, 5, 5), torch.rand(2, 3, 4, 5, 5))).graph
    assert "aten::add_" not in str(graph) and "aten::add" in str(graph)
