"""TensorRT's own verdict on an exported graph: ``polygraphy inspect capability`` (its ONNX parser), where it can run.

The operator lint (lint.py) is a table read from onnx-tensorrt's documentation and runs
everywhere; this asks the installed TensorRT's parser itself, through the function behind
Polygraphy's ``inspect capability`` command. It needs the ``tensorrt`` package and a CUDA
device (the parser lives in a TensorRT builder); elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Capability:
    """Whether TensorRT's ONNX parser takes the whole graph; ``checked`` False with the ``reason`` when skipped."""

    checked: bool
    supported: bool | None
    reason: str
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return asdict(self)

    def summary(self) -> str:
        """One line for the export log."""
        if not self.checked:
            return f"TensorRT capability: skipped ({self.reason})"
        if self.supported:
            return f"TensorRT capability: the whole graph is supported ({self.reason})"
        shown = "; ".join(f"{e['node']} ({e['op']}): {e['message']}" for e in self.errors[:3])
        return f"TensorRT capability: {len(self.errors)} node(s) rejected by {self.reason}: {shown}"


def skip_reason() -> str | None:
    """Why the check cannot run here, or None when it can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (pip install 'twdeploy[gpu]' on an NVIDIA machine)"
    if not torch.cuda.is_available():
        return "TensorRT's parser needs a CUDA device and torch sees none"
    return None


def inspect_capability(onnx_path: Path) -> Capability:
    """Parse ``onnx_path`` with TensorRT's ONNX parser (Polygraphy's ``inspect capability``); errors per node."""
    reason = skip_reason()
    if reason is not None:
        return Capability(False, None, reason)
    import tensorrt
    from polygraphy.tools.inspect.subtool.capability import parse

    supported, parser = parse(str(onnx_path))
    errors = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        errors.append({"node": error.node_name(), "op": error.node_operator(), "message": error.desc()})
    return Capability(True, bool(supported) and not errors, f"TensorRT {tensorrt.__version__}", errors)
