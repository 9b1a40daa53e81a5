"""The paper's baselines on the same encoder: a U-Net (pixel masks only) and a multi-task U-Net (+ tags).

The encoder is any ``ChainNet``. Its chain (containers of type ``nn.Sequential`` flattened)
splits into a convolutional trunk and a classification head at the first global layer
(adaptive pooling, flatten or linear). A skip connection is taken wherever the trunk changes
resolution: the last feature map before each downsampling layer. The decoder climbs back up
through them (bilinear upsampling, concatenation, two 3x3 conv + BN + ReLU) and a 1x1 conv gives
the class score maps, upsampled to the input size. Those score maps play the heatmaps' part.

Logits: the multi-task U-Net runs the encoder's own head on the trunk's output; the plain
U-Net has no classifier and reports the spatial maximum of each score map instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twdeploy.model.backbones import ChainNet
from twdeploy.model.lrp import lrp_forward
from twdeploy.model.registry import build_backbone
from twdeploy.model.segmenter import ClassSelection

HEAD_LAYERS = (nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)
MAX_DECODER_WIDTH = 256
PROBE_SIZE = 64


def flat_chain(layers: Sequence[nn.Module]) -> list[nn.Module]:
    """The chain with every ``nn.Sequential`` replaced by its layers (recursively)."""
    flat: list[nn.Module] = []
    for layer in layers:
        flat.extend(flat_chain(list(layer)) if isinstance(layer, nn.Sequential) else [layer])
    return flat


def split_chain(encoder: ChainNet) -> tuple[list[nn.Module], list[nn.Module]]:
    """``(trunk, head)``: the flattened chain cut before its first global (head) layer."""
    layers = flat_chain(encoder.chain())
    for index, layer in enumerate(layers):
        if isinstance(layer, HEAD_LAYERS):
            return layers[:index], layers[index:]
    raise ValueError(f"{type(encoder).__name__}: no pooling, flatten or linear head layer in its chain")


@torch.no_grad()
def skip_plan(trunk: Sequence[nn.Module], in_channels: int) -> tuple[list[int], list[int], int]:
    """Trunk indices whose outputs are skips, their channel counts, and the trunk's output channels.

    Found by a probe forward (eval mode, so batch-norm statistics stay untouched): layer ``i``
    is a skip when layer ``i + 1`` changes the spatial size, unless layer ``i`` itself enlarged
    it (explicit padding before a strided conv). The input image is never a skip.
    """
    states = [layer.training for layer in trunk]
    for layer in trunk:
        layer.eval()
    try:
        x = torch.zeros(1, in_channels, PROBE_SIZE, PROBE_SIZE)
        sizes, channels = [], []
        for layer in trunk:
            x = layer(x)
            sizes.append(tuple(x.shape[-2:]))
            channels.append(int(x.shape[1]))
    finally:
        for layer, state in zip(trunk, states, strict=True):
            layer.train(state)
    before = [(PROBE_SIZE, PROBE_SIZE), *sizes[:-1]]
    enlarged = [h > h0 or w > w0 for (h, w), (h0, w0) in zip(sizes, before, strict=True)]
    skips = [i for i in range(len(trunk) - 1) if sizes[i + 1] != sizes[i] and not enlarged[i]]
    if not skips:
        raise ValueError("the encoder trunk never changes resolution: nothing to skip-connect")
    return skips, [channels[i] for i in skips], channels[-1]


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def upsample(x: Tensor, like: Tensor) -> Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``like`` (static sizes: a constant Resize)."""
    size = (int(like.shape[-2]), int(like.shape[-1]))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two 3x3 conv + BN + ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*_conv_bn_relu(cin + cskip, cout), *_conv_bn_relu(cout, cout))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(torch.cat([upsample(x, skip), skip], dim=1))


class UNet(nn.Module):
    """U-Net on a classifier's encoder; ``forward(images) -> (logits (N, K), score maps (N, K, H, W))``."""

    has_classifier = False

    def __init__(self, arch: str | ChainNet = "resnet50", num_classes: int = 21, in_channels: int = 3) -> None:
        super().__init__()
        self.encoder = build_backbone(arch, num_classes, in_channels) if isinstance(arch, str) else arch
        self.arch = arch if isinstance(arch, str) else type(arch).__name__
        self.num_classes = num_classes
        self.selection = ClassSelection()
        trunk, _ = split_chain(self.encoder)
        self.skip_at, skip_channels, cin = skip_plan(trunk, in_channels)
        blocks = []
        for cskip in reversed(skip_channels):
            cout = min(cskip, MAX_DECODER_WIDTH)
            blocks.append(UpBlock(cin, cskip, cout))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.classify = nn.Conv2d(cin, num_classes, 1)

    @property
    def output_names(self) -> list[str]:
        """Names of ``forward``'s outputs, in order (the score maps take the heatmaps' name)."""
        return ["logits", "heatmaps"]

    def features(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The trunk's output and the skip features, shallowest first."""
        trunk, _ = split_chain(self.encoder)
        x, skips = images, []
        for index, layer in enumerate(trunk):
            x = layer(x)
            if index in self.skip_at:
                skips.append(x)
        return x, skips

    def score_maps(self, bottom: Tensor, skips: list[Tensor], images: Tensor) -> Tensor:
        """Class score maps ``(N, K, H, W)`` at the input size."""
        x = bottom
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = block(x, skip)
        maps = self.classify(x)
        return maps if maps.shape[-2:] == images.shape[-2:] else upsample(maps, images)

    def logits(self, bottom: Tensor, maps: Tensor) -> Tensor:
        """Per-class image scores: the spatial maximum of each score map (no classifier)."""
        return maps.amax(dim=(2, 3))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        bottom, skips = self.features(images)
        maps = self.score_maps(bottom, skips, images)
        return self.logits(bottom, maps), maps

    @torch.no_grad()
    def predict_masks(self, images: Tensor) -> Tensor:
        """Class-id masks ``(N, H, W)``: argmax over the score maps."""
        return self.forward(images)[1].argmax(dim=1)


class MultiTaskUNet(UNet):
    """The U-Net plus the encoder's classification head on the trunk's output, trained on the tags."""

    has_classifier = True

    def logits(self, bottom: Tensor, maps: Tensor) -> Tensor:
        """The encoder head's class logits."""
        _, head = split_chain(self.encoder)
        x = bottom
        for layer in head:
            x = lrp_forward(layer, x)[0]  # exportable adaptive pooling for any sizes
        return x
