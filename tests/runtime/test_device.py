"""The one device resolver, shared by training, evaluation and every backend."""

from __future__ import annotations

import pytest
import torch

from twdeploy.errors import TwdeployError
from twdeploy.runtime.device import resolve_device
from twdeploy.training.device import resolve_device as training_resolver


def test_training_and_inference_share_the_resolver():
    assert training_resolver is resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu0", "cuda:x"])
def test_unknown_devices_are_one_line_errors(name):
    with pytest.raises(TwdeployError, match=f"--device {name}") as info:
        resolve_device(name)
    assert "\n" not in str(info.value)


def test_cuda_index_is_accepted_or_explained():
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(TwdeployError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(TwdeployError, match="no CUDA device is visible"):
            resolve_device("cuda:1")
