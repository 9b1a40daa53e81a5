"""The triton backend (``triton://`` / ``triton+grpc://``) through tritonclient, against a stand-in server.

No real Triton Inference Server runs here: ``triton_standin.StandInServer`` answers the KServe v2
HTTP and gRPC calls tritonclient makes, serving the repository ``twdeploy export --triton``
wrote with ONNX Runtime. So these tests check the client side (URL rule, card and interface
read from the server's config and metadata, chunking to ``max_batch_size``, binary tensors,
one-line errors) and that segmenting through the server equals segmenting the local .onnx;
they do not prove a real server accepts the repository.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import twdeploy
from tests.inference.tiny_model import IMAGE_SIZE, build_run, write_mixed_folder
from twdeploy.cli.app import app
from twdeploy.errors import TwdeployError
from twdeploy.export.triton import CONFIG_NAME, config_text, parse_config, write_repository
from twdeploy.export.triton import TritonOptions as Options
from twdeploy.model.card_files import CARD_KEY, read_onnx_card
from twdeploy.runtime import detect_backend, open_backend
from twdeploy.runtime.triton_backend import TritonAddress, parse_url

pytest.importorskip("tritonclient.http")
pytest.importorskip("tritonclient.grpc")
from tests.runtime.triton_standin import StandInModel, StandInServer

MAX_BATCH = 2
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``twdeploy export RUN --triton REPO --triton-name tiny`` of a top-1 tiny model: (repo, its model.onnx)."""
    root = tmp_path_factory.mktemp("triton")
    run, _ = build_run(root)
    repo, out = root / "repo", root / "export"
    args = ["export", str(run), "--topk", "1", "--out", str(out), "--triton", str(repo), "--triton-name", "tiny"]
    result = runner.invoke(app, [*args, "--triton-max-batch", str(MAX_BATCH)])
    assert result.exit_code == 0, result.output
    mask_args = ["export", str(run), "--topk", "1", "--outputs", "mask", "--out", str(root / "export-mask")]
    result = runner.invoke(app, [*mask_args, "--triton", str(repo), "--triton-name", "tinymask"])
    assert result.exit_code == 0, result.output
    # the same graph served as a model that failed to load, and as a plain (non-twdeploy) Triton model
    write_repository(repo, out / "model.onnx", Options(name="broken"))
    plain = write_repository(repo, out / "model.onnx", Options(name="plain"))
    config = parse_config((plain / CONFIG_NAME).read_text())
    del config.parameters[CARD_KEY]
    (plain / CONFIG_NAME).write_text(config_text(config))
    return repo, out / "model.onnx"


@pytest.fixture(scope="module")
def server(exported: tuple[Path, Path]) -> Iterator[StandInServer]:
    repo, _ = exported
    models = [StandInModel(repo / name) for name in ("tiny", "tinymask", "plain")]
    models.append(StandInModel(repo / "broken", ready=False))
    with StandInServer(models) as running:
        yield running


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(n: int) -> np.ndarray:
    return np.random.default_rng(2).random((n, 3, *IMAGE_SIZE), dtype=np.float32)


def test_a_mask_only_export_serves_its_in_graph_mask(exported: tuple[Path, Path], server: StandInServer) -> None:
    backend = open_backend(f"triton://{server.http_url}/tinymask")
    local = open_backend(exported[1], device="cpu")
    try:
        assert "mask" in backend.output_names and "heatmaps" not in backend.output_names
        remote = backend.infer(_batch(3))
        assert remote.heatmaps is None and remote.mask is not None
        np.testing.assert_array_equal(remote.masks(), local.infer(_batch(3)).masks())
    finally:
        backend.close()
        local.close()


def test_url_rule() -> None:
    assert parse_url("triton://gpu-box/seg") == TritonAddress("http", "gpu-box:8000", "seg")
    assert parse_url("triton+grpc://gpu-box/seg") == TritonAddress("grpc", "gpu-box:8001", "seg")
    assert parse_url("triton://10.0.0.2:9000/seg/") == TritonAddress("http", "10.0.0.2:9000", "seg")
    assert str(parse_url("triton+grpc://[::1]:9001/seg")) == "triton+grpc://[::1]:9001/seg"
    assert detect_backend("triton://h/seg") == detect_backend("triton+grpc://h/seg") == "triton"
    for bad in ("triton://host", "triton://host:99999/seg", "triton://host/a/b", "triton+http://host/seg"):
        with pytest.raises(TwdeployError, match=r"not a Triton model address; use triton://HOST\[:PORT\]/NAME"):
            parse_url(bad)


@pytest.mark.parametrize("scheme", ["triton", "triton+grpc"])
def test_card_and_interface_come_from_the_server(server: StandInServer, exported: tuple[Path, Path], scheme: str):
    url = f"{scheme}://{server.http_url if scheme == 'triton' else server.grpc_url}/tiny"
    backend = open_backend(url)
    assert backend.name == "triton" and backend.card == read_onnx_card(exported[1])
    assert backend.card.topk == 1 and backend.card.image_size == IMAGE_SIZE
    assert backend.input_name == "images" and backend.input_datatype == "FP32" and backend.max_batch == MAX_BATCH
    assert backend.output_names == ["logits", "heatmaps", "class_ids"]
    protocol = "HTTP" if scheme == "triton" else "GRPC"
    assert backend.provider.startswith("Triton 0 at 127.0.0.1:") and f"({protocol}), onnxruntime_onnx on CPU" in (
        backend.provider
    )
    local = open_backend(exported[1], device="cpu")
    server.requests.clear()
    remote_out, local_out = backend.infer(_batch(5)), local.infer(_batch(5))
    assert server.requests == [2, 2, 1]  # chunked to max_batch_size (the stand-in rejects larger batches)
    assert remote_out.mask is None and local_out.mask is None
    for remote, here in zip(remote_out[:3], local_out[:3], strict=True):
        assert remote.dtype == here.dtype
        np.testing.assert_array_equal(remote, here)
    backend.close()
    local.close()


def test_segment_cli_through_the_server_gives_the_local_masks(
    server: StandInServer, exported: tuple[Path, Path], tmp_path: Path
) -> None:
    good = write_mixed_folder(tmp_path / "images")
    outputs = {}
    for name, model in (("local", str(exported[1])), ("served", f"triton://{server.http_url}/tiny")):
        out = outputs[name] = tmp_path / name
        args = ["segment", model, str(tmp_path / "images"), "--out", str(out), "--batch", "3"]
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "Written: 4, skipped: 3" in result.output
    assert "backend triton on Triton 0 at 127.0.0.1" in result.output
    for stem in good:
        served = np.asarray(Image.open(outputs["served"] / "masks" / f"{stem}.png"))
        np.testing.assert_array_equal(served, np.asarray(Image.open(outputs["local"] / "masks" / f"{stem}.png")))


def test_python_api_over_grpc_and_from_another_thread(server: StandInServer, exported: tuple[Path, Path]) -> None:
    images = [np.random.default_rng(i).integers(0, 256, (40 + i, 50, 3), dtype=np.uint8) for i in range(3)]
    with twdeploy.load(exported[1], device="cpu") as model:
        local = model.predict(images, batch=3)
    for url in (f"triton+grpc://{server.grpc_url}/tiny", f"triton://{server.http_url}/tiny"):
        with twdeploy.load(url) as model:
            assert model.path == url and model.names == ("background", "disc", "square") and "Triton" in repr(model)
            with ThreadPoolExecutor(1) as pool:  # tritonclient.http's client is per thread
                served = pool.submit(model.predict, images, batch=3).result()
            served += model.predict(images[:1])
        assert len(served) == 4
        for remote, here in zip(served, [*local, local[0]], strict=True):
            np.testing.assert_array_equal(remote.mask, here.mask)
            assert remote.tags() == here.tags()


def test_stand_in_speaks_json_tensors_too(server: StandInServer) -> None:
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url)
    batch = _batch(2)
    results = []
    for binary in (True, False):
        tensor = http.InferInput("images", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=binary)
        wanted = [http.InferRequestedOutput(name, binary_data=binary) for name in ("logits", "class_ids")]
        results.append(client.infer("tiny", [tensor], outputs=wanted))
    client.close()
    for name in ("logits", "class_ids"):
        np.testing.assert_array_equal(results[0].as_numpy(name), results[1].as_numpy(name))


@pytest.mark.parametrize("scheme", ["triton", "triton+grpc"])
def test_errors_are_one_line(server: StandInServer, scheme: str) -> None:
    address = server.http_url if scheme == "triton" else server.grpc_url
    cases = [
        (f"{scheme}://127.0.0.1:{_closed_port()}/tiny", "cannot reach a Triton server at 127.0.0.1:"),
        (f"{scheme}://{address}/broken", r"model 'broken' is on the server but not ready \(UNAVAILABLE\)"),
        (f"{scheme}://{address}/nope", r"no model 'nope' on the server \(it has: broken, plain, tiny, tinymask\)"),
        (f"{scheme}://{address}/plain", "no 'twdeploy.card' parameter in its config, so it is not a twdeploy export"),
    ]
    for url, message in cases:
        with pytest.raises(TwdeployError, match=message) as info:
            open_backend(url)
        assert "\n" not in str(info.value) and str(info.value).startswith(url)


def test_inference_failure_and_wrong_options(server: StandInServer) -> None:
    url = f"triton://{server.http_url}/tiny"
    backend = open_backend(url)
    server.models["tiny"].ready = False  # unloaded while a client streams
    try:
        with pytest.raises(TwdeployError, match=r"inference failed on the server \(.*'tiny' is not ready\)"):
            backend.infer(_batch(1))
    finally:
        server.models["tiny"].ready = True
        backend.close()
    with pytest.raises(TwdeployError, match="a Triton model runs where the server puts it"):
        open_backend(url, device="cuda")
    with pytest.raises(TwdeployError, match="use --backend triton"):
        open_backend(url, "onnxruntime")
    with pytest.raises(TwdeployError, match="not a Triton model address"):
        open_backend("runs/demo", "triton")
    with pytest.raises(TwdeployError, match="--half applies to the torch backend"):
        open_backend(url, half=True)


def test_missing_tritonclient_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tritonclient.http", None)
    with pytest.raises(TwdeployError, match=r"needs the tritonclient package: pip install 'twdeploy\[triton\]'"):
        open_backend("triton://127.0.0.1:8000/tiny")


def test_cli_unreachable_server_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    url = f"triton://127.0.0.1:{_closed_port()}/tiny"
    args = [sys.executable, "-m", "twdeploy", "segment", url, str(tmp_path)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{url}: cannot reach a Triton server" in proc.stderr
