"""The model card: everything needed to rebuild a segmenter and feed it, stored with every artefact.

Checkpoints, ONNX files (``metadata_props``) and TensorRT engines (a sidecar JSON) all carry
the same card, so ``segment`` and ``export`` need no extra flags.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from twdeploy.model.segmenter import Segmenter
from twdeploy.model.unet import MultiTaskUNet, UNet

CARD_VERSION = 3
SegmentationModel = Segmenter | UNet
"""What a card builds: ``forward(images) -> (logits, heatmaps or score maps[, class_ids])``."""
MODEL_KINDS = ("heatmap", "unet", "mtunet")
"""``heatmap``: the classifier + tied LRP decoder; ``unet`` / ``mtunet``: the paper's baselines (model/unet.py)."""
PIXEL_OUTPUTS = ("heatmaps", "mask")
"""Per-pixel outputs an exported graph can have: the float class maps, and/or their argmax as class ids."""


@dataclass(frozen=True)
class ModelCard:
    """Model kind, architecture, classes, input geometry, preprocessing and class selection of a model.

    ``model`` is one of :data:`MODEL_KINDS`; cards written before it existed are ``heatmap``.
    ``outputs`` are the per-pixel outputs of the artefact (:data:`PIXEL_OUTPUTS`): a torch model
    and a default export give ``heatmaps``; ``export --outputs mask`` puts the argmax in the graph.
    ``input_rule`` is the heatmap decoder's rule for the input layer; cards before version 2 are ``epsilon``.
    ``gamma`` is its LRP-gamma for the other convs; cards before version 3 are 0 (LRP-epsilon).
    """

    arch: str
    class_names: tuple[str, ...]
    image_size: tuple[int, int] = (256, 256)
    in_channels: int = 3
    normalization: dict[str, Any] = field(default_factory=lambda: {"mode": "unit"})
    eps: float = 1e-6
    classes: tuple[int, ...] | None = None
    topk: int | None = None
    version: int = CARD_VERSION
    model: str = "heatmap"
    outputs: tuple[str, ...] = ("heatmaps",)
    input_rule: str = "epsilon"
    gamma: float = 0.0

    def __post_init__(self) -> None:
        if not self.outputs or set(self.outputs) - set(PIXEL_OUTPUTS):
            raise ValueError(f"outputs {','.join(self.outputs)!r}: choose from {', '.join(PIXEL_OUTPUTS)}")
        if self.model not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.model!r}; choose one of: {', '.join(MODEL_KINDS)}")
        if self.model != "heatmap" and self.selection != "all":
            raise ValueError(f"--topk and --classes apply to heatmap models; a {self.model} scores every class")

    @property
    def num_classes(self) -> int:
        """Class count, background included."""
        return len(self.class_names)

    @property
    def selection(self) -> str:
        """``all``, ``ids`` or ``topk``."""
        return "ids" if self.classes is not None else "topk" if self.topk is not None else "all"

    def class_ids(self, items: Iterable[int | str]) -> tuple[int, ...]:
        """Ids of class names or ids (``"disc"``, ``3``, ``"3"``), in order, once each; ValueError names a bad one."""
        ids: list[int] = []
        for item in items:
            text = str(item).strip()
            if text.isdigit() and int(text) < self.num_classes:
                index = int(text)
            elif text in self.class_names:
                index = self.class_names.index(text)
            else:
                raise ValueError(
                    f"{text}: not a class of this model: use ids 0..{self.num_classes - 1} "
                    f"or names ({', '.join(self.class_names)})"
                )
            if index not in ids:
                ids.append(index)
        return tuple(ids)

    def with_selection(self, classes: tuple[int, ...] | None = None, topk: int | None = None) -> ModelCard:
        """The same model with another class selection (an export choice)."""
        return replace(self, classes=classes, topk=topk)

    def with_outputs(self, outputs: tuple[str, ...]) -> ModelCard:
        """The same model with other per-pixel outputs (an export choice), in :data:`PIXEL_OUTPUTS` order."""
        order = {name: i for i, name in enumerate(PIXEL_OUTPUTS)}
        return replace(self, outputs=tuple(sorted(set(outputs), key=lambda o: order.get(o, len(order)))))

    @property
    def output_names(self) -> list[str]:
        """The graph's output names, in order: logits, [heatmaps], [class_ids], [mask]."""
        names = ["logits"]
        names += ["heatmaps"] if "heatmaps" in self.outputs else []
        names += ["class_ids"] if self.selection != "all" else []
        return names + (["mask"] if "mask" in self.outputs else [])

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return asdict(self)

    def to_json(self) -> str:
        """Compact JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on an unknown card version."""
        if data.get("version", CARD_VERSION) > CARD_VERSION:
            raise ValueError(f"model card version {data['version']} is newer than this twdeploy understands")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("class_names", "image_size", "classes", "outputs"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def build(self, class_chunk: int | None = None, max_memory: int | None = None) -> SegmentationModel:
        """A freshly initialised model of this kind, architecture and class selection.

        ``class_chunk`` and ``max_memory`` bound a segmenter's decoder memory (runtime choices, not in the card).
        """
        if self.model == "unet":
            return UNet(self.arch, self.num_classes, self.in_channels)
        if self.model == "mtunet":
            return MultiTaskUNet(self.arch, self.num_classes, self.in_channels)
        return Segmenter(
            self.arch,
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            eps=self.eps,
            classes=self.classes,
            topk=self.topk,
            class_chunk=class_chunk,
            max_memory=max_memory,
            input_rule=self.input_rule,
            gamma=self.gamma,
        )
