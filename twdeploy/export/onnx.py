"""Segmenter -> ONNX: dynamic batch, static image size, the model card in ``metadata_props``.

Graph interface (float32 whatever the precision inside), the same for every model kind:
  ``images``    (N, 3, H, W) float32, preprocessed as the card says
  ``logits``    (N, K) float32 (a plain U-Net: the spatial maximum of each score map)
  ``heatmaps``  (N, K', H, W) float32 (a U-Net: its class score maps)
  ``class_ids`` (N, K') int64, only with a fixed-class or top-k selection
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
from twdeploy.model.segmenter import Segmenter
from twdeploy.model.unet import UNet

DEFAULT_OPSET = 17
INPUT_NAME = "images"
RELEVANCE_TARGET = 256.0


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
    }


def to_onnx(
    model: SegmentationModel, card: ModelCard, opset: int = DEFAULT_OPSET, half: bool = False
) -> onnx.ModelProto:
    """Trace ``model`` (a segmenter's batch norms folded) with the TorchScript exporter; checked and shape-inferred."""
    if model.selection.mode != card.selection:
        raise ValueError(f"model selects {model.selection.mode!r} classes but the card says {card.selection!r}")
    names = model.output_names
    if isinstance(model, Segmenter):
        folded = fold_batchnorm(model)
        module = _Exported(folded.half() if half else folded)
    else:
        module = _ExportedUNet(copy.deepcopy(model).half() if half else model)
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
