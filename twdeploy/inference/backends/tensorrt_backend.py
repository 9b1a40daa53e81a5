"""TensorRT engines: the TensorRT Python API with torch CUDA tensors as buffers (no pycuda).

An engine carries no metadata of its own; its model card is the sidecar ``<engine>.json``
(``model.engine`` -> ``model.engine.json``) that ``twdeploy export --trt`` writes.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from twdeploy.errors import TwdeployError
from twdeploy.export.tensorrt import read_engine_card
from twdeploy.inference.backends.base import Outputs, check_model_kind, run_in_chunks

_INSTALL = "pip install 'twdeploy[gpu]' on a machine with an NVIDIA GPU"


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or a one-line error when it or CUDA is missing."""
    try:
        import tensorrt
    except ImportError:
        raise TwdeployError(f"tensorrt is not installed: {_INSTALL}") from None
    if not torch.cuda.is_available():
        raise TwdeployError(f"TensorRT needs a CUDA device and torch sees none here: {_INSTALL}")
    return tensorrt


class TensorRTBackend:
    """A deserialised engine run with ``execute_async_v3`` on a torch CUDA stream."""

    name = "tensorrt"

    def __init__(self, model: str | Path, device: str = "auto") -> None:
        path = check_model_kind(model, "tensorrt")
        if device == "cpu":
            raise TwdeployError("TensorRT engines run on CUDA only; drop --device cpu or pick another backend")
        trt = import_tensorrt()
        self.card = read_engine_card(path)
        self.dev = torch.device("cuda" if device == "auto" else device)
        self.device = str(self.dev)
        torch.cuda.set_device(self.dev)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise TwdeployError(
                f"{path}: TensorRT {trt.__version__} cannot load this engine (built by another TensorRT version "
                "or for another GPU?); rebuild it here with twdeploy export --trt"
            )
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.dev)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_name = next(n for n in names if is_input[n])
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.provider = f"TensorRT {trt.__version__} ({torch.cuda.get_device_name(self.dev)})"

    def _run(self, batch: np.ndarray) -> Outputs:
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(batch).to(self.dev, self.dtypes[self.input_name], non_blocking=True).contiguous()
            self.context.set_input_shape(self.input_name, tuple(x.shape))
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            outputs = {}
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.dev)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        ids = outputs.get("class_ids")
        return (
            outputs["logits"].float().cpu().numpy(),
            outputs["heatmaps"].float().cpu().numpy(),
            None if ids is None else ids.long().cpu().numpy(),
        )

    def infer(self, batch: np.ndarray) -> Outputs:
        return run_in_chunks(self._run, np.ascontiguousarray(batch, np.float32), self.min_batch, self.max_batch)

    def close(self) -> None:
        del self.context, self.engine, self.runtime
        torch.cuda.empty_cache()


def _torch_dtype(trt: ModuleType, dtype: object) -> torch.dtype:
    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int64: torch.int64,
        trt.bool: torch.bool,
        trt.int8: torch.int8,
    }
    if dtype not in table:
        raise TwdeployError(f"engine tensor type {dtype} is not supported by twdeploy")
    return table[dtype]
