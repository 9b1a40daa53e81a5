"""Identities of the relevance decoder: one pass == class loop, conservation, LRP-0 == grad x input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.model.nets import Chain, strip_biases, zoo
from twdeploy import Segmenter
from twdeploy.model import masks_from_heatmaps
from twdeploy.model.segmenter import LIVE_TENSORS, chunk_for_budget

NAMES = sorted(zoo())


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize("name", NAMES)
def test_one_pass_equals_class_by_class(name: str) -> None:
    net = zoo()[name].eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _, batched = Segmenter(net, num_classes=5)(x)
        for c in range(5):
            _, single, ids = Segmenter(net, num_classes=5, classes=[c])(x)
            assert ids.tolist() == [[c], [c]]
            assert rel(single[:, 0], batched[:, c]) < 1e-5


def test_class_chunks_give_the_same_heatmaps() -> None:
    net = zoo()["resnet_basic"].eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _, whole = Segmenter(net, num_classes=5)(x)
        _, chunked = Segmenter(net, num_classes=5, class_chunk=2)(x)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_conservation_on_bias_free_nets(name: str) -> None:
    net = strip_biases(zoo()[name]).double()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits, heatmaps = Segmenter(net, num_classes=5, eps=1e-12)(x)
    assert torch.allclose(
        heatmaps.sum(dim=(2, 3)), torch.diag_embed(logits).diagonal(dim1=1, dim2=2), rtol=1e-4
    )
    assert logits.abs().min() > 0


@pytest.mark.parametrize("name", NAMES)
def test_lrp0_equals_gradient_times_input(name: str) -> None:
    net = strip_biases(zoo()[name]).double()
    seg = Segmenter(net, num_classes=5, eps=1e-14)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    logits, heatmaps = seg(x)
    for c in range(5):
        (grad,) = torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)
        expected = (grad * x).sum(dim=1)
        assert rel(heatmaps[:, c].detach(), expected) < 1e-8, f"class {c}"


def test_overlapping_max_pool_sums_shared_winners() -> None:
    """A 3x3/s2 pool where one input wins two windows gets both windows' relevance."""
    net = Chain(nn.MaxPool2d(3, 2, 1), nn.Flatten(1), nn.Linear(4, 1, bias=False)).double().eval()
    with torch.no_grad():
        net.layers[2].weight.fill_(1.0)
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    x[0, 0, 1, 1] = 5.0  # wins all four windows
    _, heatmaps = Segmenter(net, num_classes=1, eps=1e-12)(x)
    assert heatmaps[0, 0, 1, 1].item() == pytest.approx(20.0)
    assert heatmaps.sum().item() == pytest.approx(20.0)


def test_train_mode_batch_norm_equals_folded_conv() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    head = [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(6, 4)]
    net = Chain(conv, bn, *head).double().train()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        _, heatmaps = Segmenter(net, num_classes=4, eps=1e-12)(x)
        z = conv(x)
        mean, var = z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False)
        s = bn.weight / torch.sqrt(var + bn.eps)
        folded = nn.Conv2d(3, 6, 3, padding=1).double()
        folded.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))
        folded.bias.copy_(s * (conv.bias - mean) + bn.bias)
        _, expected = Segmenter(Chain(folded, *head).double().eval(), num_classes=4, eps=1e-12)(x)
    assert rel(heatmaps, expected) < 1e-8


def test_topk_is_background_plus_best_classes() -> None:
    net = zoo()["vgg"].eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        logits, full = Segmenter(net, num_classes=5)(x)
        _, top, ids = Segmenter(net, num_classes=5, topk=2)(x)
    assert ids.shape == (3, 3)
    assert (ids[:, 0] == 0).all()
    expected = torch.topk(logits[:, 1:], 2, dim=1).indices + 1
    assert torch.equal(ids[:, 1:], expected)
    torch.testing.assert_close(top, full.gather(1, ids[:, :, None, None].expand_as(top)))


def test_predict_masks_maps_selected_heatmaps_to_class_ids() -> None:
    heatmaps = torch.zeros(1, 2, 2, 2)
    heatmaps[0, 1, 0, 0] = 1.0
    masks = masks_from_heatmaps(heatmaps, torch.tensor([[0, 7]]))
    assert masks.tolist() == [[[7, 0], [0, 0]]]
    seg = Segmenter(zoo()["vgg"].eval(), num_classes=5, topk=1)
    assert seg.predict_masks(torch.rand(2, 3, 32, 32)).shape == (2, 32, 32)


def test_heatmap_loss_reaches_encoder_through_tied_weights() -> None:
    """The decoder's tied weights can be an alias parameter: its gradient is the decoder half."""
    net = zoo()["resnet_basic"].train()
    seg = Segmenter(net, num_classes=5)
    x = torch.rand(2, 3, 32, 32)
    conv = net.layer1[0].conv1
    alias = nn.Parameter(conv.weight.data)
    assert alias.data_ptr() == conv.weight.data_ptr()
    for weights in ({}, {conv: alias}):
        seg.zero_grad()
        alias.grad = None
        logits, saved = seg.encode(x)
        heatmaps = seg.decode(saved, seg.start_relevance(logits)[0], weights)
        heatmaps.square().mean().backward()
        if not weights:
            shared = conv.weight.grad.clone()
        else:
            assert alias.grad is not None and alias.grad.abs().sum() > 0
            torch.testing.assert_close(conv.weight.grad + alias.grad, shared, rtol=1e-4, atol=1e-7)


def test_rejects_layers_without_a_rule() -> None:
    with pytest.raises(ValueError, match="no relevance rule"):
        Segmenter(Chain(nn.Conv2d(3, 4, 3), nn.GELU()), num_classes=4)
    with pytest.raises(ValueError, match="either"):
        Segmenter("vgg_mini", num_classes=4, classes=[1], topk=1)


def test_memory_budget_chunks_classes_with_the_same_heatmaps() -> None:
    net = zoo()["resnet_basic"].eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _, saved = net.lrp_forward(x)
        largest = 2 * 3 * 32 * 32 * 4  # the input, float32: the largest saved activation
        assert chunk_for_budget(saved, 5, 2 * LIVE_TENSORS * largest) == 2
        assert chunk_for_budget(saved, 5, 1) == 1 and chunk_for_budget(saved, 5, 10**12) == 5
        _, whole = Segmenter(net, num_classes=5)(x)
        _, budgeted = Segmenter(net, num_classes=5, max_memory=2 * LIVE_TENSORS * largest)(x)
    torch.testing.assert_close(budgeted, whole, rtol=1e-6, atol=1e-7)
