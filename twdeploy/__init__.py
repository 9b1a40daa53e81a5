"""twdeploy: an image classifier whose LRP explanation is its segmentation head, shipped."""

from twdeploy.model import Segmenter

__version__ = "0.1.0"
__all__ = ["Model", "SegmentResult", "Segmenter", "__version__", "load", "train", "val"]


def __getattr__(name: str) -> object:
    """The Python API (``load``, ``train``, ``val``, ``Model``, ``SegmentResult``), imported on first use."""
    if name in ("load", "train", "val", "Model"):
        from twdeploy import api

        return getattr(api, name)
    if name == "SegmentResult":
        from twdeploy.inference.results import SegmentResult

        return SegmentResult
    raise AttributeError(f"module 'twdeploy' has no attribute {name!r}")
