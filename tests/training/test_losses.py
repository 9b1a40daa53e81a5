"""Losses of method.md section 2, checked against torch's reference losses and by hand."""

import pytest
import torch
import torch.nn.functional as F

from twdeploy.training.losses import classification_loss, segmentation_loss, total_loss

N, K, H, W = 3, 4, 5, 6


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(N, K, generator=g, requires_grad=True)
    tags = (torch.rand(N, K, generator=g) > 0.5).float()
    heatmaps = torch.randn(N, K, H, W, generator=g, requires_grad=True)
    masks = torch.randint(0, K, (N, H, W), generator=g)
    masks[:, 0, :] = 255
    return logits, tags, heatmaps, masks


def _manual_soft_margin(logits, tags, weight):
    per = -(tags * F.logsigmoid(logits) + (1 - tags) * F.logsigmoid(-logits)) * weight
    return (per.sum(1) / logits.shape[1]).mean()


def test_classification_loss_matches_torch_with_background_weight_zero(batch):
    logits, tags, _, _ = batch
    loss = classification_loss(logits, tags)
    weight = torch.tensor([0.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(loss, F.multilabel_soft_margin_loss(logits, tags, weight=weight))
    torch.testing.assert_close(loss, _manual_soft_margin(logits, tags, weight))
    assert loss > 0
    loss.backward()
    assert torch.all(logits.grad[:, 0] == 0)  # background learns only through its heatmap
    assert torch.all(logits.grad[:, 1:] != 0)


def test_classification_loss_background_weight_and_half_inputs(batch):
    logits, tags, _, _ = batch
    torch.testing.assert_close(
        classification_loss(logits, tags, background_weight=1.0), F.multilabel_soft_margin_loss(logits, tags)
    )
    half = classification_loss(logits.detach().bfloat16(), tags)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, classification_loss(logits.detach().bfloat16().float(), tags))
    with pytest.raises(ValueError, match="N, K"):
        classification_loss(logits, tags[:, :2])


def test_segmentation_loss_is_cross_entropy_over_valid_pixels_of_masked_images(batch):
    _, _, heatmaps, masks = batch
    has_mask = torch.tensor([True, False, True])
    loss = segmentation_loss(heatmaps, masks, has_mask)
    expected = F.cross_entropy(heatmaps[[0, 2]], masks[[0, 2]], ignore_index=255)
    torch.testing.assert_close(loss, expected)
    # By hand: mean of -log softmax at the true class over the valid pixels of images 0 and 2.
    logp = heatmaps.log_softmax(1)
    picked = [
        -logp[n, masks[n, y, x], y, x]
        for n in (0, 2)
        for y in range(H)
        for x in range(W)
        if masks[n, y, x] != 255
    ]
    torch.testing.assert_close(loss, torch.stack(picked).mean())


def test_ignored_pixels_and_unmasked_images_do_not_contribute(batch):
    _, _, heatmaps, masks = batch
    has_mask = torch.tensor([True, False, True])
    loss = segmentation_loss(heatmaps, masks, has_mask)
    loss.backward()
    assert torch.all(heatmaps.grad[:, :, 0, :] == 0)  # the ignore row
    assert torch.all(heatmaps.grad[1] == 0)  # the image without a mask
    assert torch.all(heatmaps.grad[[0, 2], :, 1:, :] != 0)
    changed = heatmaps.detach().clone()
    changed[:, :, 0, :] = 100.0
    changed[1] = float("nan")  # not even a non-finite heatmap of an unmasked image leaks in
    other = masks.clone()
    other[1] = 0
    changed.requires_grad_()
    again = segmentation_loss(changed, other, has_mask)
    torch.testing.assert_close(again, loss)
    again.backward()
    assert torch.isfinite(changed.grad).all()


def test_no_mask_in_batch_gives_zero_with_a_grad_path(batch):
    _, _, heatmaps, masks = batch
    loss = segmentation_loss(heatmaps, masks, torch.zeros(N, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(heatmaps.grad == 0)
    all_ignored = segmentation_loss(heatmaps, torch.full_like(masks, 255), torch.ones(N, dtype=torch.bool))
    assert all_ignored.item() == 0.0 and not torch.isnan(all_ignored)


def test_boundary_background_maps_the_ignore_label_to_class_zero(batch):
    _, _, heatmaps, masks = batch
    has_mask = torch.ones(N, dtype=torch.bool)
    loss = segmentation_loss(heatmaps, masks, has_mask, boundary="background")
    mapped = torch.where(masks == 255, 0, masks)
    torch.testing.assert_close(loss, F.cross_entropy(heatmaps, mapped))
    assert not torch.isclose(loss, segmentation_loss(heatmaps, masks, has_mask))
    with pytest.raises(ValueError, match="boundary"):
        segmentation_loss(heatmaps, masks, has_mask, boundary="edge")


def test_half_precision_heatmaps_are_scored_in_float32(batch):
    _, _, heatmaps, masks = batch
    has_mask = torch.ones(N, dtype=torch.bool)
    for dtype in (torch.bfloat16, torch.float16):
        low = heatmaps.detach().to(dtype).requires_grad_()
        loss = segmentation_loss(low, masks, has_mask)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, F.cross_entropy(low.detach().float(), masks, ignore_index=255))
        loss.backward()
        assert low.grad.dtype == dtype


def test_bad_shapes_are_rejected(batch):
    _, _, heatmaps, masks = batch
    with pytest.raises(ValueError, match="masks"):
        segmentation_loss(heatmaps, masks[:, :2], torch.ones(N, dtype=torch.bool))
    with pytest.raises(ValueError, match="has_mask"):
        segmentation_loss(heatmaps, masks, torch.ones(N))


def test_total_loss_weights_and_parts(batch):
    logits, tags, heatmaps, masks = batch
    has_mask = torch.tensor([True, False, False])
    total, parts = total_loss(logits, tags, heatmaps, masks, has_mask)
    cls, seg = classification_loss(logits, tags), segmentation_loss(heatmaps, masks, has_mask)
    torch.testing.assert_close(total, 10.0 * cls + seg)
    torch.testing.assert_close(parts["cls"], cls.detach())
    torch.testing.assert_close(parts["seg"], seg.detach())
    assert not parts["cls"].requires_grad
    total, _ = total_loss(
        logits, tags, heatmaps, masks, has_mask, w_cls=2.0, w_seg=0.5, boundary="background"
    )
    torch.testing.assert_close(
        total, 2.0 * cls + 0.5 * segmentation_loss(heatmaps, masks, has_mask, boundary="background")
    )
    # A batch without masks contributes only the tag loss, and backward still works.
    total, parts = total_loss(logits, tags, heatmaps, masks, torch.zeros(N, dtype=torch.bool))
    torch.testing.assert_close(total, 10.0 * cls)
    total.backward()
    assert torch.all(heatmaps.grad == 0) and logits.grad is not None


def test_heatmap_scale_multiplies_the_pixel_logits() -> None:
    torch.manual_seed(0)
    heatmaps = torch.randn(2, 3, 4, 4) * 1e-3
    masks = torch.randint(0, 3, (2, 4, 4))
    has = torch.ones(2, dtype=torch.bool)
    scaled = segmentation_loss(heatmaps, masks, has, scale=1000.0)
    torch.testing.assert_close(scaled, segmentation_loss(heatmaps * 1000.0, masks, has))
    assert not torch.isclose(scaled, segmentation_loss(heatmaps, masks, has))
