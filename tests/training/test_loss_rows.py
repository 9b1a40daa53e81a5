"""Decoding only the masked images of a training batch: the same loss and gradient as decoding all."""

import pytest
import torch

from twdeploy.model import Segmenter
from twdeploy.model.lrp import BatchStatistics
from twdeploy.training.chunking import detached, loss_rows, select_rows, training_heatmaps
from twdeploy.training.losses import total_loss
from twdeploy.training.tying import decoder_aliases

K = 4


def _loss_and_grads(model: Segmenter, aliases: dict, has_mask: torch.Tensor, grad: str, decode_masked_only: bool):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=g, dtype=torch.float64)
    tags = (torch.rand(4, K, generator=g) > 0.5).double()
    masks = torch.randint(0, K, (4, 32, 32), generator=g)
    torch.manual_seed(1)  # the same dropout draws in both runs
    logits, saved = model.encode(images)
    rows = loss_rows(has_mask) if decode_masked_only else slice(None)
    heatmaps = training_heatmaps(model, logits, saved, aliases, None, grad, rows)
    loss, _ = total_loss(logits, tags, heatmaps, masks[rows], has_mask[rows])
    params = [*model.parameters(), *aliases.values()]
    return loss, torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("arch", ["resnet_mini", "vgg_mini"])
@pytest.mark.parametrize("bn_rule", ["separate", "canonical"])
@pytest.mark.parametrize("grad", ["tied", "full"])
@pytest.mark.parametrize("masked", [(1, 0, 1, 0), (1, 1, 0, 0), (0, 0, 0, 0)])
def test_masked_rows_give_the_gradient_of_the_whole_batch(arch, bn_rule, grad, masked) -> None:
    torch.manual_seed(0)
    model = Segmenter(arch, K, bn_rule=bn_rule).double().train()  # batch statistics in the BN rules
    aliases = decoder_aliases(model, "separate")
    has_mask = torch.tensor(masked, dtype=torch.bool)
    loss_all, grads_all = _loss_and_grads(model, aliases, has_mask, grad, decode_masked_only=False)
    loss_rows_only, grads_rows = _loss_and_grads(model, aliases, has_mask, grad, decode_masked_only=True)
    torch.testing.assert_close(loss_rows_only, loss_all, rtol=1e-12, atol=0)
    for got, want in zip(grads_rows, grads_all, strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12 * float(want.abs().max()))
    decoder_grads = grads_all[-len(aliases) :]
    assert any(float(g.abs().max()) > 0 for g in decoder_grads) == any(masked)


def test_loss_rows_is_a_slice_for_leading_masks_and_indices_otherwise() -> None:
    assert loss_rows(torch.tensor([True, True, False])) == slice(0, 2)
    assert loss_rows(torch.tensor([False, False])) == slice(0, 1)
    assert loss_rows(torch.tensor([True, True])) == slice(0, 2)
    torch.testing.assert_close(loss_rows(torch.tensor([False, True, False, True])), torch.tensor([1, 3]))


def test_select_rows_keeps_batch_statistics_and_non_tensors_whole() -> None:
    activation = torch.arange(24.0).view(4, 6)
    statistics = BatchStatistics(torch.rand(4, 6, 2, 2))
    picked = select_rows([(activation, statistics, None), (2, 3)], torch.tensor([0, 2]))
    torch.testing.assert_close(picked[0][0], activation[[0, 2]])
    assert picked[0][1] is statistics and picked[0][2] is None and picked[1] == (2, 3)


@pytest.mark.parametrize("transform", ["detached", "select_rows"])
def test_a_tensor_saved_twice_maps_to_one_tensor(transform: str) -> None:
    block_input, other = torch.rand(2, 3, 4, 4, requires_grad=True), torch.rand(2, 3, 4, 4)
    saved = [(block_input, other), [block_input, None]]  # a residual block's conv input and its shortcut
    out = detached(saved) if transform == "detached" else select_rows(saved, slice(0, 1))
    assert out[0][0] is out[1][0] and out[0][1] is not out[0][0]
    if transform == "detached":
        assert not out[0][0].requires_grad
