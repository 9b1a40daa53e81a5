"""Segmenter -> ONNX: dynamic batch, static image size, the model card in ``metadata_props``.

Graph interface (float32 whatever the precision inside), the same for every model kind:
  ``images``    (N, 3, H, W) float32, preprocessed as the card says
  ``logits``    (N, K) float32 (a plain U-Net: the spatial maximum of each score map)
  ``heatmaps``  (N, K', H, W) float32 (a U-Net: its class score maps)
  ``class_ids`` (N, K') int64, only with a fixed-class or top-k selection
  ``mask``      (N, H, W) int32 or uint8 class ids, only with ``outputs`` naming ``mask``: the
                argmax over the heatmaps (ArgMax, mapped through ``class_ids`` by GatherElements)
                inside the graph, so a GPU deployment copies back one integer per pixel; with
                ``outputs=("mask",)`` the graph has no ``heatmaps`` output at all
A half-precision export keeps that interface and runs weights and activations in float16
inside; the relevance divisions stay float32 (``twdeploy.model.rules.precise``).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

import twdeploy
from twdeploy import atomic
from twdeploy.data.transforms import Normalization
from twdeploy.model.card import ModelCard, SegmentationModel
from twdeploy.model.card_files import CARD_KEY
from twdeploy.model.folding import fold_batchnorm
from twdeploy.model.segmenter import Segmenter, masks_from_heatmaps
from twdeploy.model.unet import UNet

DEFAULT_OPSET = 17
INPUT_NAME = "images"
RELEVANCE_TARGET = 256.0
MASK_DTYPES = {"int32": torch.int32, "uint8": torch.uint8}


class _Exported(nn.Module):
    """The segmenter's forward behind a float32 interface, its relevance scaled by a power of two.

    Every relevance rule is linear in the relevance, so the decoder runs on ``2^k * R_top``
    and the heatmaps are divided by ``2^k`` afterwards (exact in floating point). ``k`` is
    chosen per image so that the largest start relevance is about ``RELEVANCE_TARGET``: in
    float16 the input-level relevance of a model with small logits would otherwise fall into
    the subnormal range, which ONNX Runtime's CPU kernels flush to zero.
    """

    def __init__(self, model: Segmenter) -> None:
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        logits, saved = self.model.encode(images.to(self.dtype))
        r_top, class_ids = self.model.start_relevance(logits)
        peak = logits.float().abs().amax(dim=1).clamp_min(1e-30)
        scale = torch.pow(2.0, torch.round(torch.log2(RELEVANCE_TARGET / peak)))
        heatmaps = self.model.decode(saved, r_top * scale.view(-1, 1, 1).to(r_top.dtype))
        outputs = (logits.float(), heatmaps.float() / scale.view(-1, 1, 1, 1))
        return outputs if class_ids is None else (*outputs, class_ids)


class _ExportedUNet(nn.Module):
    """A U-Net's forward behind the float32 interface (no relevance, nothing to rescale)."""

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(t.float() for t in self.model(images.to(self.dtype)))


class _PixelOutputs(nn.Module):
    """The exported forward's ``(logits, heatmaps[, class_ids])`` as the card's outputs: heatmaps and/or mask."""

    def __init__(self, inner: nn.Module, outputs: tuple[str, ...], mask_dtype: torch.dtype) -> None:
        super().__init__()
        self.inner, self.outputs, self.mask_dtype = inner, outputs, mask_dtype

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        logits, heatmaps, *ids = self.inner(images)
        out = [logits, heatmaps] if "heatmaps" in self.outputs else [logits]
        out += ids
        if "mask" in self.outputs:
            out.append(masks_from_heatmaps(heatmaps, ids[0] if ids else None).to(self.mask_dtype))
        return tuple(out)


def metadata(card: ModelCard, half: bool) -> dict[str, str]:
    """The ``metadata_props`` entries: the card and, for other tools, its main fields spelled out."""
    norm = Normalization.from_dict(card.normalization).to_dict()
    return {
        CARD_KEY: card.to_json(),
        "twdeploy.version": twdeploy.__version__,
        "twdeploy.model": card.model,
        "twdeploy.arch": card.arch,
        "twdeploy.class_names": json.dumps(list(card.class_names)),
        "twdeploy.input_size": json.dumps(list(card.image_size)),
        "twdeploy.preprocessing": json.dumps({"layout": "NCHW", "channels": "RGB", **norm}),
        "twdeploy.selection": json.dumps({"mode": card.selection, "classes": card.classes, "topk": card.topk}),
        "twdeploy.precision": "fp16" if half else "fp32",
        "twdeploy.outputs": json.dumps(card.output_names),
    }


def to_onnx(
    model: SegmentationModel,
    card: ModelCard,
    opset: int = DEFAULT_OPSET,
    half: bool = False,
    mask_dtype: str = "int32",
) -> onnx.ModelProto:
    """Trace ``model`` (a segmenter's batch norms folded) with the TorchScript exporter; checked and shape-inferred.

    The graph's outputs are ``card.output_names`` (``card.outputs`` chooses heatmaps and / or
    the in-graph ``mask``, of ``mask_dtype`` int32 or uint8).
    """
    if model.selection.mode != card.selection:
        raise ValueError(f"model selects {model.selection.mode!r} classes but the card says {card.selection!r}")
    if mask_dtype not in MASK_DTYPES:
        raise ValueError(f"mask dtype {mask_dtype!r}: choose {' or '.join(MASK_DTYPES)}")
    if mask_dtype == "uint8" and card.num_classes > 256:
        raise ValueError(f"a uint8 mask holds class ids 0..255; this model has {card.num_classes} classes: use int32")
    names = card.output_names
    if isinstance(model, Segmenter):
        folded = fold_batchnorm(model)
        inner: nn.Module = _Exported(folded.half() if half else folded)
    else:
        inner = _ExportedUNet(copy.deepcopy(model).half() if half else model)
    module = _PixelOutputs(inner, card.outputs, MASK_DTYPES[mask_dtype])
    dummy = torch.rand(2, card.in_channels, *card.image_size, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *names)},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    onnx.checker.check_model(proto)
    proto.producer_name, proto.producer_version = "twdeploy", twdeploy.__version__
    proto.doc_string = f"twdeploy {card.model} segmenter {card.arch}: {', '.join(names)}"
    onnx.helper.set_model_props(proto, metadata(card, half))
    return proto


def save_onnx(proto: onnx.ModelProto, path: Path) -> int:
    """Write atomically and durably; returns the size in bytes."""
    return atomic.write_bytes(path, proto.SerializeToString(), durable=True)
