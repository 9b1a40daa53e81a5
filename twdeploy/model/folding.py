"""Canonical LRP: every eval-mode BatchNorm2d merged into the convolution before it.

The conv rule on the merged layer is canonical LRP-epsilon (method.md, 1.1, BatchNorm2d row);
it also drops one class-folded elementwise pass per batch norm from the decoder.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from twdeploy.model.segmenter import Segmenter


def _layer_sequences(module: nn.Module) -> Iterator[list[nn.Module]]:
    """Every ordered layer list the decoder walks: chains, residual branches, Sequentials."""
    for m in module.modules():
        if isinstance(m, nn.Sequential):
            yield list(m)
        for method in ("chain", "residual_branch"):
            if callable(getattr(m, method, None)):
                yield list(getattr(m, method)())


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` is a child, anywhere under ``root``."""
    for parent in root.modules():
        for name, child in list(parent.named_children()):
            if child is old:
                setattr(parent, name, new)


def fold_batchnorm(model: Segmenter) -> Segmenter:
    """An equivalent eval-mode copy of ``model`` whose conv -> batch-norm pairs are single convs.

    Each ``BatchNorm2d`` with running statistics directly after a ``Conv2d`` in a layer
    sequence becomes an ``Identity`` and the conv gets the merged weight and bias; the copy is
    in eval mode (folding uses the running statistics). ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    pairs = {
        id(bn): (conv, bn)
        for layers in _layer_sequences(folded.encoder)
        for conv, bn in itertools.pairwise(layers)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None
    }
    for conv, bn in pairs.values():
        _replace(folded.encoder, conv, fuse_conv_bn_eval(conv, bn))
        _replace(folded.encoder, bn, nn.Identity())
    return folded


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` ready for inference: a segmenter as :func:`fold_batchnorm`'s copy, other kinds in eval mode."""
    return fold_batchnorm(model) if isinstance(model, Segmenter) else model.eval()

