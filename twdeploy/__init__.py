"""twdeploy: an image classifier whose LRP explanation is its segmentation head, shipped."""

__version__ = "0.1.0"
