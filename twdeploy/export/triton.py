"""A Triton Inference Server model repository from an exported model (``twdeploy export --triton DIR``).

Layout, loadable by ``tritonserver --model-repository DIR`` as is::

    DIR/<name>/config.pbtxt      platform, inputs/outputs read from the graph, batching, instances
    DIR/<name>/labels.txt        class names, one a line (Triton's label file for ``logits``)
    DIR/<name>/1/model.onnx      or model.plan for a TensorRT engine

The config is built as Triton's own ``ModelConfig`` protobuf (``tritonclient``'s
``model_config_pb2``) and written in protobuf text format; the model card travels as the
``twdeploy.card`` parameter, so a client can recover class names and preprocessing.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.model.card_files import CARD_KEY, read_onnx_card

CONFIG_NAME = "config.pbtxt"
LABELS_NAME = "labels.txt"
PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".engine": ("tensorrt_plan", "model.plan")}
INSTANCE_KINDS = ("auto", "gpu", "cpu")
_ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should serve the model."""

    name: str | None = None
    max_batch_size: int = 8
    instances: int = 1
    kind: str = "auto"
    queue_delay_us: int = 100
    trt_accelerator: bool = False
    fp16_accelerator: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.instances < 1 or self.queue_delay_us < 0:
            raise TwdeployError("Triton: max batch size and instance count must be >= 1, queue delay >= 0")
        if self.kind not in INSTANCE_KINDS:
            raise TwdeployError(f"Triton instance kind {self.kind!r}: choose one of {', '.join(INSTANCE_KINDS)}")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as Triton sees it: dims without the batch axis."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def _model_config_pb2() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise TwdeployError(
            "writing a Triton model repository needs the tritonclient package; pip install 'twdeploy[triton]'"
        ) from None
    return model_config_pb2


def graph_io(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an exported graph; the leading (batch) axis must be dynamic."""
    graph = onnx.load(onnx_path, load_external_data=False).graph

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        if tensor.elem_type not in _ONNX_TO_TRITON:
            raise TwdeployError(f"{onnx_path}: {value.name} has element type {tensor.elem_type}, unknown to Triton")
        dims = tensor.shape.dim
        if not dims or dims[0].dim_value:
            raise TwdeployError(f"{onnx_path}: {value.name} has no dynamic batch axis; re-export with twdeploy export")
        rest = tuple(d.dim_value if d.dim_value else -1 for d in dims[1:])
        return TensorSpec(value.name, _ONNX_TO_TRITON[tensor.elem_type], rest)

    initializers = {i.name for i in graph.initializer}
    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in graph.output]


def model_name(text: str) -> str:
    """A Triton-safe model name (letters, digits, ``_``, ``-``, ``.``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    if not name:
        raise TwdeployError(f"Triton model name {text!r} has no usable characters; pass --triton-name")
    return name


def build_config(
    name: str,
    platform: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    card_json: str,
    options: TritonOptions,
) -> Any:
    """Triton's ``ModelConfig`` message for the model."""
    pb = _model_config_pb2()
    config = pb.ModelConfig(name=name, platform=platform, max_batch_size=options.max_batch_size)
    for spec in inputs:
        config.input.add(name=spec.name, data_type=pb.DataType.Value(spec.data_type), dims=spec.dims)
    for spec in outputs:
        out = config.output.add(name=spec.name, data_type=pb.DataType.Value(spec.data_type), dims=spec.dims)
        if spec.name == "logits":
            out.label_filename = LABELS_NAME
    sizes = sorted({s for s in (1, options.max_batch_size // 2, options.max_batch_size) if s >= 1})
    config.dynamic_batching.preferred_batch_size.extend(sizes)
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    kind = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}[options.kind]
    config.instance_group.add(count=options.instances, kind=pb.ModelInstanceGroup.Kind.Value(kind))
    if options.trt_accelerator and platform == "onnxruntime_onnx":
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = "FP16" if options.fp16_accelerator else "FP32"
    config.parameters[CARD_KEY].string_value = card_json
    return config


def config_text(config: Any) -> str:
    """``config.pbtxt`` text of a ``ModelConfig``."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str) -> Any:
    """Parse ``config.pbtxt`` text with Triton's schema (unknown fields are an error)."""
    from google.protobuf import text_format

    return text_format.Parse(text, _model_config_pb2().ModelConfig())


def write_repository(
    repo: Path, model_path: Path, options: TritonOptions, onnx_path: Path | None = None, default_name: str = "twdeploy"
) -> Path:
    """Add ``model_path`` (.onnx or .engine) to the repository ``repo``; returns the model's folder.

    ``onnx_path`` is the graph whose interface the model has (the engine's source ONNX); for an
    ONNX model it is the model itself. An existing model of the same name is replaced as a whole.
    """
    suffix = model_path.suffix
    if suffix not in PLATFORMS:
        raise TwdeployError(f"{model_path}: Triton serves .onnx or .engine files from twdeploy export")
    source = onnx_path or model_path
    if source.suffix != ".onnx":
        raise TwdeployError(f"{model_path}: give the ONNX file the engine was built from")
    platform, file_name = PLATFORMS[suffix]
    card = read_onnx_card(source)
    inputs, outputs = graph_io(source)
    name = model_name(options.name or default_name)
    config = build_config(name, platform, inputs, outputs, card.to_json(), options)
    staging = repo / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "1").mkdir(parents=True)
        shutil.copyfile(model_path, staging / "1" / file_name)
        atomic.write_text(staging / LABELS_NAME, "".join(f"{c}\n" for c in card.class_names))
        atomic.write_text(staging / CONFIG_NAME, config_text(config))
        target = repo / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TwdeployError(
            f"{repo}: cannot write the Triton repository ({exc.strerror}); pass a writable --triton folder"
        ) from None
    return target
