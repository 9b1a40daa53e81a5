"""What a model file is: its card, parameter count, GFLOPs per image and its inputs / outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from twdeploy.model.card import ModelCard
from twdeploy.model.card_files import read_card, read_engine_info

Tensors = list[tuple[str, str, tuple[int | str, ...]]]
"""(name, dtype, shape) per tensor; a dynamic axis is named (``batch``)."""


@dataclass(frozen=True)
class ModelSummary:
    """The facts ``twdeploy info MODEL`` prints."""

    path: Path
    card: ModelCard
    parameters: int
    gflops: float
    inputs: Tensors
    outputs: Tensors
    extra: dict[str, Any]


def summarize(path: str | Path) -> ModelSummary:
    """Card from the file, parameters and GFLOPs (one image, forward + relevance) from its architecture."""
    path = Path(path)
    card = read_card(path)
    model = card.build().eval()
    image = torch.rand(1, card.in_channels, *card.image_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        outputs = model(image)
    parameters = sum(p.numel() for p in model.parameters())  # the tied decoder adds none
    inputs: Tensors = [("images", "float32", ("batch", card.in_channels, *card.image_size))]
    produced: Tensors = [
        (name, str(t.dtype).removeprefix("torch."), ("batch", *t.shape[1:]))
        for name, t in zip(model.output_names, outputs, strict=True)
    ]
    extra: dict[str, Any] = {}
    if path.suffix.lower() == ".onnx":
        inputs, produced = _onnx_io(path)
    elif path.suffix.lower() in (".engine", ".plan", ".trt"):
        extra = {k: v for k, v in read_engine_info(path).items() if k != "card"}
    return ModelSummary(path, card, parameters, counter.get_total_flops() / 1e9, inputs, produced, extra)


def _onnx_io(path: Path) -> tuple[Tensors, Tensors]:
    """Inputs and outputs as the ONNX graph declares them."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph

    def rows(values: Any) -> Tensors:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            shape = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
            out.append((value.name, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, shape))
        return out

    return rows(graph.input), rows(graph.output)
