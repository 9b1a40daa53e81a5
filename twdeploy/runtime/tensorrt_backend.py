"""TensorRT engines, loaded and run by Polygraphy's ``TrtRunner`` (it owns buffers, shapes and dtypes).

An engine carries no metadata of its own; its model card is the sidecar ``<engine>.json``
(``model.engine`` -> ``model.engine.json``) that ``twdeploy export --trt`` writes.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from twdeploy.errors import TwdeployError
from twdeploy.model.card_files import read_engine_card
from twdeploy.runtime.base import Outputs, check_model_kind, run_in_chunks
from twdeploy.runtime.device import resolve_device

INSTALL_HINT = "pip install 'twdeploy[gpu]' on a machine with an NVIDIA GPU"


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or a one-line error when it or CUDA is missing."""
    try:
        import tensorrt
    except ImportError:
        raise TwdeployError(f"tensorrt is not installed: {INSTALL_HINT}") from None
    if not torch.cuda.is_available():
        raise TwdeployError(f"TensorRT needs a CUDA device and torch sees none here: {INSTALL_HINT}")
    return tensorrt


class TensorRTBackend:
    """A deserialised engine behind an active ``TrtRunner``; torch CUDA tensors in, numpy out."""

    name = "tensorrt"

    def __init__(self, model: str | Path, device: str = "auto") -> None:
        path = check_model_kind(model, "tensorrt")
        if device == "cpu":
            raise TwdeployError("TensorRT engines run on CUDA only; drop --device cpu or pick another backend")
        trt = import_tensorrt()
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
        from polygraphy.datatype import DataType
        from polygraphy.exception import PolygraphyException

        self.card = read_engine_card(path)
        self.dev = resolve_device("cuda" if device == "auto" else device)
        self.device = str(self.dev)
        torch.cuda.set_device(self.dev)
        try:
            self.runner = TrtRunner(EngineFromBytes(path.read_bytes()))
            self.runner.activate()
        except PolygraphyException:
            raise TwdeployError(
                f"{path}: TensorRT {trt.__version__} cannot load this engine (built by another TensorRT version "
                "or for another GPU?); rebuild it here with twdeploy export --trt"
            ) from None
        meta = self.runner.get_input_metadata(use_numpy_dtypes=False)
        self.input_name = next(iter(meta))
        self.input_dtype = DataType.to_dtype(meta[self.input_name].dtype, "torch")
        low, _, high = self.runner.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.provider = f"TensorRT {trt.__version__} ({torch.cuda.get_device_name(self.dev)})"

    def _run(self, batch: np.ndarray) -> Outputs:
        x = torch.from_numpy(batch).to(self.dev, self.input_dtype).contiguous()
        out = self.runner.infer({self.input_name: x})
        heatmaps, ids, mask = (out.get(name) for name in ("heatmaps", "class_ids", "mask"))
        return Outputs(
            out["logits"].float().cpu().numpy(),
            None if heatmaps is None else heatmaps.float().cpu().numpy(),
            None if ids is None else ids.long().cpu().numpy(),
            None if mask is None else mask.cpu().numpy(),
        )

    def infer(self, batch: np.ndarray) -> Outputs:
        return run_in_chunks(self._run, np.ascontiguousarray(batch, np.float32), self.min_batch, self.max_batch)

    def close(self) -> None:
        self.runner.deactivate()
        torch.cuda.empty_cache()
