"""Models served by Triton Inference Server, through ``tritonclient``: ``triton://HOST[:PORT]/NAME``.

The URL scheme picks the protocol: ``triton://`` speaks HTTP (port 8000 when none is given),
``triton+grpc://`` speaks gRPC (port 8001). Everything else comes from the server: the model
card from the ``twdeploy.card`` parameter that ``twdeploy export --triton`` writes into
``config.pbtxt`` (model config endpoint), input and output names and datatypes from the model
metadata endpoint, ``max_batch_size`` from the config (larger batches are sent in chunks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard
from twdeploy.model.card_files import CARD_KEY
from twdeploy.runtime.base import Outputs, run_in_chunks

PROTOCOLS = {"triton": ("http", 8000), "triton+grpc": ("grpc", 8001)}
"""URL scheme -> (tritonclient protocol, default port)."""
INSTALL_HINT = "pip install 'twdeploy[triton]'"
URL_FORM = "triton://HOST[:PORT]/NAME (HTTP, port 8000) or triton+grpc://HOST[:PORT]/NAME (gRPC, port 8001)"
OUTPUTS = ("logits", "heatmaps", "class_ids", "mask")
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TritonAddress:
    """Where a served model is: protocol, server ``host:port`` and model name."""

    protocol: str
    server: str
    model: str

    def __str__(self) -> str:
        scheme = next(s for s, (p, _) in PROTOCOLS.items() if p == self.protocol)
        return f"{scheme}://{self.server}/{self.model}"


def parse_url(url: str) -> TritonAddress:
    """``triton://host:8000/name`` -> its address; a one-line error naming the accepted forms."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    name = parts.path.strip("/")
    if parts.scheme not in PROTOCOLS or not parts.hostname or port == -1 or not name or "/" in name or parts.query:
        raise TwdeployError(f"{url}: not a Triton model address; use {URL_FORM}")
    protocol, default_port = PROTOCOLS[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return TritonAddress(protocol, f"{host}:{port or default_port}", name)


def import_tritonclient(protocol: str) -> ModuleType:
    """``tritonclient.http`` or ``tritonclient.grpc``, or a one-line error saying how to install it."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
    except ImportError:
        raise TwdeployError(f"serving through Triton needs the tritonclient package: {INSTALL_HINT}") from None
    return client


def _ints(values: list[Any]) -> tuple[int, ...]:
    """Shape values as ints (gRPC's JSON gives int64 as strings)."""
    return tuple(int(v) for v in values)


class TritonBackend:
    """A model on a Triton server; batches go out as binary tensors, larger than ``max_batch_size`` in chunks.

    ``tritonclient.http``'s client belongs to the thread (gevent hub) that made it, so each
    thread that infers gets its own client.
    """

    name = "triton"
    device = "server"

    def __init__(self, url: str, device: str = "auto") -> None:
        if device != "auto":
            raise TwdeployError(
                f"--device {device}: a Triton model runs where the server puts it; drop --device "
                "(choose the server's device at export with --triton-kind)"
            )
        self.address = address = parse_url(url)
        self.client_module = import_tritonclient(address.protocol)
        from tritonclient.utils import InferenceServerException, triton_to_np_dtype

        self.errors = (InferenceServerException, OSError)
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        try:
            metadata, config, server = self._describe()
            self.card = self._read_card(config)
            self.inputs = [(t["name"], t["datatype"], _ints(t["shape"])) for t in metadata["inputs"]]
            outputs = {t["name"]: t["datatype"] for t in metadata["outputs"]}
            self._check_interface(outputs)
        except TwdeployError:
            self.close()
            raise
        self.output_names = [name for name in OUTPUTS if name in outputs]
        self.input_name, self.input_datatype, _ = self.inputs[0]
        self.input_dtype = triton_to_np_dtype(self.input_datatype)
        self.max_batch = int(config.get("max_batch_size", 0)) or None
        kinds = sorted({g.get("kind", "KIND_AUTO").removeprefix("KIND_") for g in config.get("instance_group", [])})
        where = f" on {'+'.join(kinds)}" if kinds else ""
        self.provider = (
            f"Triton {server.get('version', '?')} at {address.server} ({address.protocol.upper()}), "
            f"{metadata.get('platform', '?')}{where}"
        )

    def _client(self) -> Any:
        """This thread's client, made on first use."""
        client = getattr(self._local, "client", None)
        if client is None:
            module = self.client_module
            if self.address.protocol == "http":
                client = module.InferenceServerClient(self.address.server, connection_timeout=CONNECT_TIMEOUT_S)
            else:
                client = module.InferenceServerClient(self.address.server)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _describe(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The model's metadata and config and the server's metadata; one-line errors when unusable."""
        address, client = self.address, self._client()
        json_kw = {"as_json": True} if address.protocol == "grpc" else {}
        try:
            ready = client.is_server_ready()
        except self.errors as exc:
            raise TwdeployError(
                f"{address}: cannot reach a Triton server at {address.server} ({_reason(exc)}); start it "
                "(tritonserver --model-repository DIR) or check the host, port and scheme"
            ) from None
        if not ready:
            raise TwdeployError(f"{address}: the Triton server at {address.server} is not ready yet; retry shortly")
        try:
            model_ready = client.is_model_ready(address.model)
        except self.errors:  # some servers answer an unknown model with an error rather than "not ready"
            model_ready = False
        if not model_ready:
            raise TwdeployError(f"{address}: {self._not_ready(client, json_kw)}")
        try:
            metadata = client.get_model_metadata(address.model, **json_kw)
            config = client.get_model_config(address.model, **json_kw)
            server = client.get_server_metadata(**json_kw)
        except self.errors as exc:
            raise TwdeployError(f"{address}: the server did not describe the model ({_reason(exc)})") from None
        return metadata, config.get("config", config) if address.protocol == "grpc" else config, server

    def _not_ready(self, client: Any, json_kw: dict[str, bool]) -> str:
        """Why the model is not ready, with the models the server has."""
        model = self.address.model
        try:
            index = client.get_model_repository_index(**json_kw)
        except self.errors:
            return f"no ready model '{model}' on the server; check the name and the server's log"
        models = index.get("models", []) if isinstance(index, dict) else index
        state = {m["name"]: m.get("state", "UNKNOWN") for m in models}
        if model in state:
            return f"model '{model}' is on the server but not ready ({state[model]}); see the server's log"
        listed = ", ".join(sorted(state)) or "none"
        return f"no model '{model}' on the server (it has: {listed}); check the name"

    def _read_card(self, config: dict[str, Any]) -> ModelCard:
        """The card from the config's ``twdeploy.card`` parameter."""
        text = config.get("parameters", {}).get(CARD_KEY, {}).get("string_value")
        if not text:
            raise TwdeployError(
                f"{self.address}: the served model has no '{CARD_KEY}' parameter in its config, so it is not a "
                "twdeploy export; serve a repository written by twdeploy export --triton DIR"
            )
        try:
            return ModelCard.from_json(text)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise TwdeployError(f"{self.address}: unusable model card ({exc}); re-export with this twdeploy") from None

    def _check_interface(self, outputs: dict[str, str]) -> None:
        """One image input shaped as the card says, the logits, and the heatmaps or an in-graph mask."""
        card = self.card
        missing = "logits" not in outputs or not ({"heatmaps", "mask"} & set(outputs))
        expected = (card.in_channels, *card.image_size)
        if missing or len(self.inputs) != 1 or self.inputs[0][2][-3:] != expected:
            shapes = ", ".join(f"{n} {list(s)}" for n, _, s in self.inputs)
            raise TwdeployError(
                f"{self.address}: the served model does not match its twdeploy card (inputs {shapes}, outputs "
                f"{', '.join(outputs)}; expected one input [-1, {', '.join(map(str, expected))}], logits and "
                "heatmaps or mask); export it again with twdeploy export --triton"
            )

    def _run(self, batch: np.ndarray) -> Outputs:
        module, client = self.client_module, self._client()
        binary = {"binary_data": True} if self.address.protocol == "http" else {}  # gRPC is always binary
        data = batch.astype(self.input_dtype, copy=False)
        request = module.InferInput(self.input_name, list(data.shape), self.input_datatype)
        request.set_data_from_numpy(data, **binary)
        wanted = [module.InferRequestedOutput(name, **binary) for name in self.output_names]
        try:
            result = client.infer(self.address.model, [request], outputs=wanted)
        except self.errors as exc:
            raise TwdeployError(f"{self.address}: inference failed on the server ({_reason(exc)})") from None
        out = {name: result.as_numpy(name) for name in self.output_names}
        heatmaps, ids = out.get("heatmaps"), out.get("class_ids")
        return Outputs(
            out["logits"].astype(np.float32),
            None if heatmaps is None else heatmaps.astype(np.float32),
            None if ids is None else ids.astype(np.int64),
            out.get("mask"),
        )

    def infer(self, batch: np.ndarray) -> Outputs:
        return run_in_chunks(self._run, np.ascontiguousarray(batch, np.float32), 1, self.max_batch)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()


def _reason(exc: BaseException) -> str:
    """The first line of a tritonclient or socket error."""
    text = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    lines = str(text or "").strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
