"""Export verification and ``segment`` run the same runtime object: one ONNX Runtime backend class, one infer."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.inference.tiny_model import build_run, write_mixed_folder
from twdeploy.cli.app import app
from twdeploy.runtime.onnxruntime_backend import OnnxRuntimeBackend


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...]]]:
    """Record every ``OnnxRuntimeBackend.infer`` call (model file, batch shape), then run the real method."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    real = OnnxRuntimeBackend.infer

    def recording(self: OnnxRuntimeBackend, batch):  # type: ignore[no-untyped-def]
        seen.append((self.path.name, tuple(batch.shape)))
        return real(self, batch)

    monkeypatch.setattr(OnnxRuntimeBackend, "infer", recording)
    return seen


def test_export_verification_and_segment_call_the_same_backend(tmp_path, calls):
    run, _ = build_run(tmp_path)
    out = tmp_path / "export"
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run), "--out", str(out), "--batch", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    exported = list(calls)
    assert exported and {name for name, _ in exported} == {"model.onnx"}
    report = json.loads((out / "export_report.json").read_text())
    provider = report["artifacts"][0]["verification"]["provider"]
    assert provider == "CPU"
    calls.clear()
    write_mixed_folder(tmp_path / "images")
    images, seg = str(tmp_path / "images"), str(tmp_path / "seg")
    args = ["segment", str(out / "model.onnx"), images, "--out", seg, "--device", "cpu"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(calls) == 4 and {name for name, _ in calls} == {"model.onnx"}
    assert f"backend onnxruntime on {provider}" in result.output
