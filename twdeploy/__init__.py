"""twdeploy: an image classifier whose LRP explanation is its segmentation head, shipped."""

from twdeploy.model import Segmenter

__version__ = "0.1.0"
__all__ = ["Segmenter", "__version__"]
