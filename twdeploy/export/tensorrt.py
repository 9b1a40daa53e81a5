"""TensorRT engines built from the exported ONNX with Polygraphy's loaders (parse, configure, build, save).

FP32 engines disable TF32 so they match ONNX Runtime. ``--half`` depends on the installed major version:

* TensorRT < 11 (weak typing): the float32 ONNX is built with FP16 enabled; every elementwise
  Div layer (the relevance divisions) is pinned to float32 and the precision constraints are
  obeyed.
* TensorRT >= 11 (strong typing only, precision flags removed): the float16-typed ONNX
  (``model.fp16.onnx``) is built as a strongly typed network; its divisions are already float32.

The timing cache ``model.timing.cache`` beside the engine is read and extended by every build.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.export.batch import BatchProfile
from twdeploy.export.onnx import INPUT_NAME
from twdeploy.export.report import Artifact
from twdeploy.model.card import ModelCard
from twdeploy.model.card_files import sidecar

INSTALL_HINT = "install it with pip install 'twdeploy[gpu]' on a machine with an NVIDIA GPU"


def require() -> ModuleType:
    """The ``tensorrt`` module, or a one-line error naming what is missing (package or GPU)."""
    try:
        import tensorrt
    except ImportError:
        raise TwdeployError(
            f"--trt needs the tensorrt package, which is not installed; {INSTALL_HINT} "
            "(the ONNX model was written and verified)"
        ) from None
    if not torch.cuda.is_available():
        raise TwdeployError(
            "--trt needs an NVIDIA GPU with CUDA and torch sees none; run the export on a GPU machine "
            "(the ONNX model was written and verified)"
        )
    return tensorrt


def major_version(trt: ModuleType) -> int:
    """Major version of the installed TensorRT."""
    return int(trt.__version__.split(".")[0])


def engine_source(out: Path, half: bool) -> Path:
    """The ONNX file an engine is built from (the float16 one only for ``--half`` on TensorRT >= 11)."""
    return out / ("model.fp16.onnx" if half and major_version(require()) >= 11 else "model.onnx")


def pin_divisions(network: Any, trt: ModuleType) -> int:
    """Keep every elementwise Div layer in float32 (weakly typed FP16 builds); returns how many."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type != trt.LayerType.ELEMENTWISE:
            continue
        layer.__class__ = trt.IElementWiseLayer  # the Python binding returns the ILayer base
        if layer.op == trt.ElementWiseOperation.DIV:
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
            pinned += 1
    return pinned


def build_engine(
    onnx_path: Path, engine: Path, card: ModelCard, batch: BatchProfile, half: bool, workspace_gb: float
) -> Artifact:
    """Parse, configure (workspace, profile, precision, timing cache), build and write the engine + sidecar."""
    trt = require()
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineBytesFromNetwork,
        NetworkFromOnnxPath,
        PostprocessNetwork,
        Profile,
    )
    from polygraphy.exception import PolygraphyException

    weak_fp16 = half and major_version(trt) < 11
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=major_version(trt) >= 11 or None)
    if weak_fp16:
        network = PostprocessNetwork(network, lambda network: pin_divisions(network, trt), "pin divisions to fp32")
    geometry = (card.in_channels, *card.image_size)
    profile = Profile().add(
        INPUT_NAME, min=(batch.min, *geometry), opt=(batch.opt, *geometry), max=(batch.max, *geometry)
    )
    cache_path = engine.with_name(engine.name.split(".")[0] + ".timing.cache")
    config = CreateConfig(
        tf32=False,
        fp16=weak_fp16 or None,
        precision_constraints="obey" if weak_fp16 else None,
        profiles=[profile],
        load_timing_cache=str(cache_path) if cache_path.is_file() else None,
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(workspace_gb * 2**30)},
    )
    began = time.perf_counter()
    try:
        plan = EngineBytesFromNetwork(network, config, save_timing_cache=str(cache_path))()
    except PolygraphyException as exc:
        raise TwdeployError(
            f"{onnx_path}: TensorRT could not parse or build it ({str(exc).strip().splitlines()[-1][:200]}); "
            "see the log above, run twdeploy export --check on it, or try a larger --workspace"
        ) from None
    seconds = time.perf_counter() - began
    data = bytes(plan)
    atomic.write_bytes(engine, data)
    info = {
        "card": card.to_dict(),
        "tensorrt": trt.__version__,
        "precision": "fp16" if half else "fp32",
        "batch": vars(batch),
        "onnx": onnx_path.name,
        "device": torch.cuda.get_device_name(),
    }
    atomic.write_bytes(sidecar(engine), json.dumps(info, indent=2).encode())
    return Artifact(engine, f"tensorrt {trt.__version__} {info['precision']}", len(data), seconds)
