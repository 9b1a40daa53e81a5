"""TensorRT engines built from the exported ONNX with the official Python API, and run with torch CUDA buffers.

FP32 engines disable TF32 so they match ONNX Runtime. ``--half`` depends on the installed major version:

* TensorRT < 11 (weak typing): the float32 ONNX is built with ``BuilderFlag.FP16``; every
  elementwise Div layer (the relevance divisions) is pinned to float32 and
  ``OBEY_PRECISION_CONSTRAINTS`` makes the builder honour that.
* TensorRT >= 11 (strong typing only, precision flags removed): the float16-typed ONNX
  (``model.fp16.onnx``) is built as a strongly typed network; its divisions are already float32.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx
import torch

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.export.batch import BatchProfile
from twdeploy.export.onnx import INPUT_NAME
from twdeploy.export.report import Artifact
from twdeploy.export.verify import Outputs, Runner
from twdeploy.model.card import ModelCard

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


def sidecar(engine: Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    return engine.with_name(engine.name + ".json")


def read_engine_card(engine: Path) -> ModelCard:
    """The model card stored beside an engine."""
    path = sidecar(engine)
    if not path.is_file():
        raise TwdeployError(f"{engine}: no model card beside it ({path.name}); rebuild with twdeploy export --trt")
    return ModelCard.from_dict(json.loads(path.read_text())["card"])


def parser_errors(parser: Any, onnx_path: Path) -> list[str]:
    """One line per ONNX-parser error, naming the node (by name, else by its index in the graph)."""
    nodes = onnx.load(onnx_path, load_external_data=False).graph.node
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        index = error.node()
        node = nodes[index] if 0 <= index < len(nodes) else None
        name = (error.node_name() if hasattr(error, "node_name") else "") or (node.name if node else "")
        op = (error.node_operator() if hasattr(error, "node_operator") else "") or (node.op_type if node else "")
        lines.append(f"node {name or '?'} ({op or '?'}): {error.desc()}")
    return lines


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
    major = major_version(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if major >= 11 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise TwdeployError(
            f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(parser_errors(parser, onnx_path))
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    profile = builder.create_optimization_profile()
    geometry = (card.in_channels, *card.image_size)
    profile.set_shape(INPUT_NAME, (batch.min, *geometry), (batch.opt, *geometry), (batch.max, *geometry))
    config.add_optimization_profile(profile)
    if not half and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if half and major < 11:
        config.set_flag(trt.BuilderFlag.FP16)
        pin_divisions(network, trt)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    cache_path = engine.with_name(engine.name.split(".")[0] + ".timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    began = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - began
    if plan is None:
        raise TwdeployError(
            f"{onnx_path}: TensorRT could not build an engine (see the log above); try a larger --workspace"
        )
    data = bytes(plan)
    atomic.write_bytes(engine, data)
    atomic.write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
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


def engine_runner(engine_path: Path) -> Runner:
    """Run an engine on torch CUDA tensors (``set_tensor_address`` + ``execute_async_v3``), numpy in and out."""
    trt = require()
    dtypes = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int64: torch.int64,
        trt.bool: torch.bool,
    }
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise TwdeployError(f"{engine_path}: not a TensorRT engine for this TensorRT version and GPU; rebuild it")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    stream = torch.cuda.Stream()

    def run(images: Any) -> Outputs:
        with torch.cuda.stream(stream):
            x = torch.from_numpy(images).to("cuda", non_blocking=False).contiguous()
            context.set_input_shape(INPUT_NAME, tuple(x.shape))
            context.set_tensor_address(INPUT_NAME, x.data_ptr())
            result = {}
            for name in outputs:
                shape = tuple(context.get_tensor_shape(name))
                result[name] = torch.empty(shape, dtype=dtypes[engine.get_tensor_dtype(name)], device="cuda")
                context.set_tensor_address(name, result[name].data_ptr())
            if not context.execute_async_v3(stream.cuda_stream):
                raise TwdeployError(f"{engine_path}: TensorRT execution failed")
        stream.synchronize()
        return {name: t.cpu().numpy() for name, t in result.items()}

    return run
