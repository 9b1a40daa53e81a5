"""Tied-weight modes (method.md 1.3) and class-chunked heatmaps with the exact same gradient."""

import pytest
import torch

from twdeploy.model import Segmenter
from twdeploy.training.chunking import decode_chunked
from twdeploy.training.losses import total_loss
from twdeploy.training.tying import decoder_aliases

K = 5


def _batch(size: int = 32, n: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(n, 3, size, size, generator=g, dtype=torch.float64),
        "tags": (torch.rand(n, K, generator=g) > 0.5).double(),
        "mask": torch.randint(0, K, (n, size, size), generator=g),
        "has_mask": torch.tensor([True, False, True]),
    }


def _grads(model: Segmenter, aliases: dict, chunk: int | None) -> list[torch.Tensor]:
    batch = _batch()
    model.zero_grad()
    for a in aliases.values():
        a.grad = None
    logits, saved = model.encode(batch["image"])
    r_top, _ = model.start_relevance(logits)
    heatmaps = decode_chunked(model, saved, r_top, aliases, chunk)
    loss, _ = total_loss(logits, batch["tags"], heatmaps, batch["mask"], batch["has_mask"])
    loss.backward()
    params = [*model.parameters(), *aliases.values()]
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def test_separate_aliases_share_storage_and_get_the_decoder_gradient() -> None:
    torch.manual_seed(0)
    model = Segmenter("resnet_mini", K).double()
    aliases = decoder_aliases(model, "separate")
    conv = model.encoder.conv1
    assert aliases[conv].data_ptr() == conv.weight.data_ptr()
    grads = _grads(model, aliases, None)
    n = len(list(model.parameters()))
    decoder_part = grads[n + list(aliases).index(conv)]
    assert decoder_part.abs().sum() > 0
    assert decoder_aliases(model, "summed") == {}


@pytest.mark.parametrize("tie", ["separate", "summed"])
@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_gradients_equal_one_pass(tie: str, chunk: int) -> None:
    torch.manual_seed(0)
    model = Segmenter("resnet_mini", K).double()
    aliases = decoder_aliases(model, tie)
    full = _grads(model, aliases, None)
    chunked = _grads(model, aliases, chunk)
    for a, b in zip(full, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_summed_gradient_is_the_sum_of_the_separate_halves() -> None:
    torch.manual_seed(0)
    model = Segmenter("vgg_mini", K).double().eval()  # no dropout: both passes see the same net
    aliases = decoder_aliases(model, "separate")
    separate = _grads(model, aliases, None)
    summed = _grads(model, {}, None)
    params = list(model.parameters())
    for module, alias_grad in zip(aliases, separate[len(params) :], strict=True):
        i = next(i for i, p in enumerate(params) if p is module.weight)
        torch.testing.assert_close(summed[i], separate[i] + alias_grad)
