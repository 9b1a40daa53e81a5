"""``heatmap_grad``: the pixel loss's gradient through the tied weights only.

For a ReLU / max-pool network the eps -> 0 LRP heatmap is gradient x input, so the ``tied``
gradient must equal the gradient of the same loss on ``x * d z_c / d x`` computed by double
back-propagation (written here independently of the decoder).
"""

from __future__ import annotations

import json

import pytest
import torch

from twdeploy.errors import TwdeployError
from twdeploy.model.segmenter import Segmenter
from twdeploy.training.chunking import training_heatmaps
from twdeploy.training.config import TrainConfig
from twdeploy.training.losses import segmentation_loss

CLASSES = 4


def _gradient_times_input(model: Segmenter, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    logits = model.encoder(x)
    maps = [
        (x * torch.autograd.grad(logits[:, c].sum(), x, create_graph=True)[0]).sum(1) for c in range(CLASSES)
    ]
    return torch.stack(maps, 1)


def _tied_heatmaps(model: Segmenter, x: torch.Tensor) -> torch.Tensor:
    logits, saved = model.encode(x)
    return training_heatmaps(model, logits, saved, grad="tied")


@pytest.mark.parametrize("arch", ["vgg_mini", "resnet_mini"])
def test_tied_gradient_is_the_gradient_of_gradient_times_input(arch: str) -> None:
    torch.manual_seed(0)
    model = Segmenter(arch, num_classes=CLASSES, eps=1e-12).double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    masks = torch.randint(0, CLASSES, (2, 64, 64))
    has_mask = torch.ones(2, dtype=torch.bool)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]

    def grads(heatmaps: torch.Tensor) -> list[torch.Tensor]:
        loss = segmentation_loss(heatmaps, masks, has_mask, scale=64.0 * 64.0)
        return list(torch.autograd.grad(loss, weights))

    tied = _tied_heatmaps(model, x)
    reference = _gradient_times_input(model, x)
    assert torch.linalg.vector_norm(tied - reference) <= 1e-4 * torch.linalg.vector_norm(reference)
    for got, want in zip(grads(tied), grads(reference), strict=True):
        assert want.norm() > 0
        assert torch.linalg.vector_norm(got - want) <= 1e-4 * torch.linalg.vector_norm(want)


def test_tied_and_full_give_the_same_heatmaps() -> None:
    torch.manual_seed(0)
    model = Segmenter("vgg_mini", num_classes=CLASSES).eval()
    x = torch.rand(2, 3, 64, 64)
    _, full = model(x)
    torch.testing.assert_close(_tied_heatmaps(model, x), full)


def test_unknown_heatmap_grad_is_a_one_line_error() -> None:
    with pytest.raises(TwdeployError, match="--heatmap-grad must be one of tied, full"):
        TrainConfig(heatmap_grad="exact").validate()


def test_new_runs_default_to_tied_and_older_run_folders_resume_with_full(tmp_path) -> None:
    assert TrainConfig().heatmap_grad == "tied"
    TrainConfig(heatmap_grad="tied").save(tmp_path / "new.json")
    assert TrainConfig.load(tmp_path / "new.json").heatmap_grad == "tied"
    older = TrainConfig().to_dict()
    del older["heatmap_grad"]
    (tmp_path / "old.json").write_text(json.dumps(older))
    assert TrainConfig.load(tmp_path / "old.json").heatmap_grad == "full"
