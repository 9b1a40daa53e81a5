"""Reading the model card from any artefact: checkpoint or run folder, ONNX ``metadata_props``, engine sidecar."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard

CARD_KEY = "twdeploy.card"
"""The ``metadata_props`` key holding the card's JSON in an exported ONNX file."""
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def _load_proto(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """The ONNX graph without external data; one-line errors for a missing, empty or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise TwdeployError(f"{path}: no such file; pass the path of an exported .onnx model")
    if path.stat().st_size == 0:
        raise TwdeployError(f"{path}: file is empty (an interrupted copy or export?); export it again")
    try:
        return onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise TwdeployError(f"{path}: not a readable ONNX model ({type(exc).__name__}); re-export it") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """``metadata_props`` of an ONNX file; one-line errors for a missing or unreadable file."""
    return {p.key: p.value for p in _load_proto(path).metadata_props}


def read_onnx_card(path: str | os.PathLike[str]) -> ModelCard:
    """The model card stored in an ONNX file written by ``twdeploy export``; checks the graph has its outputs."""
    proto = _load_proto(path)
    props = {p.key: p.value for p in proto.metadata_props}
    if CARD_KEY not in props:
        raise TwdeployError(f"{path}: ONNX model has no twdeploy model card; export it with twdeploy export")
    try:
        card = ModelCard.from_json(props[CARD_KEY])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise TwdeployError(f"{path}: unusable model card ({exc}); re-export with this twdeploy") from None
    missing = [name for name in card.output_names if name not in {o.name for o in proto.graph.output}]
    if missing:
        raise TwdeployError(
            f"{path}: ONNX model has a twdeploy card but no {' or '.join(missing)} output (edited after "
            "export?); export it again with twdeploy export"
        )
    return card


def sidecar(engine: Path) -> Path:
    """``model.engine`` -> ``model.engine.json``, where an engine's card is kept."""
    return engine.with_name(engine.name + ".json")


def read_engine_info(engine: Path) -> dict:
    """The sidecar of an engine: its card plus build facts (TensorRT version, precision, batch)."""
    path = sidecar(engine)
    if not path.is_file():
        raise TwdeployError(f"{engine}: no model card beside it ({path.name}); rebuild with twdeploy export --trt")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TwdeployError(f"{path}: unreadable engine sidecar ({type(exc).__name__}); rebuild the engine") from None


def read_engine_card(engine: Path) -> ModelCard:
    """The model card stored beside an engine."""
    try:
        return ModelCard.from_dict(read_engine_info(engine)["card"])
    except (KeyError, ValueError, TypeError) as exc:
        raise TwdeployError(f"{sidecar(engine)}: unusable model card ({exc}); rebuild the engine") from None


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of a run folder, checkpoint, ``.onnx`` or engine, chosen by what ``path`` is."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return read_onnx_card(path)
    if suffix in ENGINE_SUFFIXES:
        return read_engine_card(path)
    from twdeploy.model.io import read_checkpoint

    return ModelCard.from_dict(read_checkpoint(path)["card"])
