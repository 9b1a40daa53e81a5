"""A stand-in for Triton Inference Server: the KServe v2 endpoints tritonclient uses, over HTTP and gRPC.

This is not Triton. It serves the model folders of a repository that ``twdeploy export --triton``
wrote, running each ``1/model.onnx`` with ONNX Runtime on the CPU, and answers the calls
``tritonclient.http`` and ``tritonclient.grpc`` make: server and model readiness, server and
model metadata, model config, repository index and inference (HTTP: JSON tensors and the
binary-data extension with ``Inference-Header-Content-Length``; gRPC: raw tensor contents).
Like Triton, it resolves ``KIND_AUTO`` instance groups in the config it returns (to
``KIND_CPU`` here), puts ``-1`` before the dims of a batching model's metadata, and rejects
a request larger than ``max_batch_size``. ``requests`` records each inference's batch size.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as pb
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from twdeploy.export.triton import CONFIG_NAME, parse_config

VERSION = "1"


class StandInModel:
    """One model folder of a Triton repository; ``ready=False`` serves it as a model that failed to load."""

    def __init__(self, folder: Path, ready: bool = True) -> None:
        self.config = parse_config((folder / CONFIG_NAME).read_text())
        for group in self.config.instance_group:
            if group.kind == pb.ModelInstanceGroup.KIND_AUTO:
                group.kind = pb.ModelInstanceGroup.KIND_CPU
        self.ready = ready
        self.session = ort.InferenceSession(str(folder / VERSION / "model.onnx"), providers=["CPUExecutionProvider"])

    @property
    def name(self) -> str:
        return self.config.name

    def tensors(self, declared: Any) -> list[dict[str, Any]]:
        """Metadata of config inputs or outputs: datatype without ``TYPE_``, batch axis as -1."""
        batch = [-1] if self.config.max_batch_size > 0 else []
        return [
            {"name": t.name, "datatype": pb.DataType.Name(t.data_type)[5:], "shape": batch + list(t.dims)}
            for t in declared
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": self.config.platform,
            "inputs": self.tensors(self.config.input),
            "outputs": self.tensors(self.config.output),
        }

    def config_json(self) -> dict[str, Any]:
        """The config as Triton's HTTP endpoint returns it: proto field names, every field, int64 as numbers."""
        config = json_format.MessageToDict(
            self.config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for tensor in config["input"] + config["output"]:
            tensor["dims"] = [int(d) for d in tensor["dims"]]
        return config

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ONNX Runtime on the inputs; ValueError for a batch over ``max_batch_size``."""
        limit = self.config.max_batch_size
        for array in feeds.values():
            if limit and array.shape[0] > limit:
                raise ValueError(f"inference request batch-size must be <= {limit} for '{self.name}'")
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, feeds), strict=True))


class StandInServer:
    """HTTP (``http_url``) and gRPC (``grpc_url``) endpoints on 127.0.0.1 for ``models``, each in a thread."""

    def __init__(self, models: list[StandInModel]) -> None:
        self.models = {m.name: m for m in models}
        self.requests: list[int] = []
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.http.daemon_threads = True
        self.http_url = f"127.0.0.1:{self.http.server_address[1]}"
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Servicer(self), self.grpc)
        self.grpc_url = f"127.0.0.1:{self.grpc.add_insecure_port('127.0.0.1:0')}"
        self._thread = threading.Thread(target=self.http.serve_forever, name="triton-standin", daemon=True)

    def __enter__(self) -> StandInServer:
        self._thread.start()
        self.grpc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.grpc.stop(None)
        self._thread.join()

    def model(self, name: str) -> StandInModel:
        """The named model; KeyError when it is not in the repository."""
        if name not in self.models:
            raise KeyError(f"Request for unknown model: '{name}' is not found")
        return self.models[name]

    def infer(self, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a ready model; KeyError / ValueError as Triton's error messages."""
        model = self.model(name)
        if not model.ready:
            raise KeyError(f"Request for unknown model: '{name}' is not ready")
        self.requests.append(next(iter(feeds.values())).shape[0])
        return model.run(feeds)

    def index(self) -> list[dict[str, str]]:
        return [
            {"name": m.name, "version": VERSION, "state": "READY" if m.ready else "UNAVAILABLE"}
            for m in self.models.values()
        ]


def _handler(server: StandInServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as tritonclient's connection pool expects

        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", header_length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if header_length is not None:
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Inference-Header-Content-Length", str(header_length))
            elif body:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def reply_json(self, data: Any, status: int = HTTPStatus.OK) -> None:
            self.reply(status, json.dumps(data).encode())

        def error(self, message: str) -> None:
            self.reply_json({"error": message}, HTTPStatus.BAD_REQUEST)

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            if parts == ["v2"]:
                self.reply_json({"name": "triton-standin", "version": "0", "extensions": ["binary_tensor_data"]})
            elif parts == ["v2", "health", "ready"]:
                self.reply(HTTPStatus.OK)
            elif len(parts) >= 3 and parts[:2] == ["v2", "models"]:
                try:
                    model = server.model(parts[2])
                except KeyError as exc:
                    self.error(exc.args[0])
                    return
                if parts[3:] == ["ready"]:
                    self.reply(HTTPStatus.OK if model.ready else HTTPStatus.BAD_REQUEST)
                elif parts[3:] == ["config"]:
                    self.reply_json(model.config_json())
                elif not parts[3:]:
                    self.reply_json(model.metadata())
                else:
                    self.error(f"unknown endpoint {self.path}")
            else:
                self.error(f"unknown endpoint {self.path}")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = self.path.strip("/").split("/")
            if parts == ["v2", "repository", "index"]:
                self.reply_json(server.index())
            elif len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer":
                try:
                    self.infer(parts[2], body)
                except (KeyError, ValueError) as exc:
                    self.error(exc.args[0])
            else:
                self.error(f"unknown endpoint {self.path}")

        def infer(self, name: str, body: bytes) -> None:
            header_length = int(self.headers.get("Inference-Header-Content-Length", len(body)))
            request = json.loads(body[:header_length])
            offset, feeds = header_length, {}
            for tensor in request["inputs"]:
                dtype = triton_to_np_dtype(tensor["datatype"])
                size = tensor.get("parameters", {}).get("binary_data_size")
                if size is None:
                    array = np.asarray(tensor["data"], dtype)
                else:
                    array = np.frombuffer(body[offset : offset + size], dtype)
                    offset += size
                feeds[tensor["name"]] = array.reshape(tensor["shape"])
            results = server.infer(name, feeds)
            binary_default = request.get("parameters", {}).get("binary_data_output", False)
            wanted = request.get("outputs") or [{"name": n} for n in results]
            outputs, blobs = [], []
            for want in wanted:
                array = results[want["name"]]
                out = {"name": want["name"], "datatype": _datatype(array), "shape": list(array.shape)}
                if want.get("parameters", {}).get("binary_data", binary_default):
                    blobs.append(array.tobytes())
                    out["parameters"] = {"binary_data_size": len(blobs[-1])}
                else:
                    out["data"] = array.flatten().tolist()
                outputs.append(out)
            header = json.dumps({"model_name": name, "model_version": VERSION, "outputs": outputs}).encode()
            self.reply(HTTPStatus.OK, header + b"".join(blobs), len(header) if blobs else None)

    return Handler


def _datatype(array: np.ndarray) -> str:
    return np_to_triton_dtype(array.dtype)


class _Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The gRPC side of the stand-in (``GRPCInferenceService``), sharing the models with the HTTP side."""

    def __init__(self, server: StandInServer) -> None:
        self.server = server

    def _model(self, name: str, context: grpc.ServicerContext) -> StandInModel:
        try:
            return self.server.model(name)
        except KeyError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, exc.args[0])
            raise

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return service_pb2.ServerMetadataResponse(name="triton-standin", version="0", extensions=[])

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=True)

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        model = self.server.models.get(request.name)
        return service_pb2.ModelReadyResponse(ready=model is not None and model.ready)

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return json_format.ParseDict(self._model(request.name, context).metadata(), service_pb2.ModelMetadataResponse())

    def ModelConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return service_pb2.ModelConfigResponse(config=self._model(request.name, context).config)

    def RepositoryIndex(self, request: Any, context: grpc.ServicerContext) -> Any:
        return json_format.ParseDict({"models": self.server.index()}, service_pb2.RepositoryIndexResponse())

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        feeds = {
            t.name: np.frombuffer(raw, triton_to_np_dtype(t.datatype)).reshape(list(t.shape))
            for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        try:
            results = self.server.infer(request.model_name, feeds)
        except (KeyError, ValueError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.args[0])
            raise
        names = [o.name for o in request.outputs] or list(results)
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version=VERSION)
        for name in names:
            array = results[name]
            response.outputs.add(name=name, datatype=_datatype(array), shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response
