"""Operator lint for TensorRT's ONNX parser: what an engine build would reject, found before building.

The support data lives in ``tensorrt_ops.json`` next to this module (operator matrix of
onnx-tensorrt ``docs/operators.md`` for TensorRT 10.1, with its restrictions encoded as
checks); its ``source`` entry names the commit it was read from.
"""

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import onnx
import onnx.inliner
from google.protobuf.message import DecodeError

from twdeploy.errors import TwdeployError

Severity = Literal["error", "warning"]

_DEFAULT_DOMAINS = ("", "ai.onnx")
_SUPPORT_FILE = Path(__file__).with_name("tensorrt_ops.json")


@dataclass(frozen=True)
class Finding:
    """One problem: where (node name, op type; empty for model-level findings), how bad, what."""

    node: str
    op_type: str
    severity: Severity
    message: str


@cache
def support_data() -> dict[str, Any]:
    """The TensorRT ONNX-parser support data (operators, opset range, dtypes, source)."""
    return json.loads(_SUPPORT_FILE.read_text())


def support_source() -> str:
    """One line naming where the support data comes from."""
    src = support_data()["source"]
    return f"{src['document']} for TensorRT {src['tensorrt']} ({src['commit'][:10]}, {src['commit_date']})"


def lint_model(model: onnx.ModelProto | str | os.PathLike[str]) -> list[Finding]:
    """Check a model (or an .onnx path) against TensorRT's ONNX parser; findings in graph order."""
    if not isinstance(model, onnx.ModelProto):
        model = _load(Path(model))
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    findings = _check_opset(model)
    _lint_graph(model.graph, "", frozenset(), findings, top=True)
    return findings


def has_errors(findings: Iterable[Finding]) -> bool:
    """True when any finding is an error (the CLI then exits non-zero)."""
    return any(f.severity == "error" for f in findings)


def format_findings(findings: list[Finding]) -> str:
    """A plain-text report: one line per finding, then a summary naming the support list used."""
    lines = []
    for f in findings:
        where = f"{f.node} ({f.op_type})" if f.op_type else f.node or "model"
        lines.append(f"{f.severity:<7} {where}: {f.message}")
    n_err = sum(f.severity == "error" for f in findings)
    n_warn = len(findings) - n_err
    lines.append(f"{n_err} error(s), {n_warn} warning(s) against {support_source()}")
    return "\n".join(lines)


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise TwdeployError(f"{path}: no such file; pass the path of an exported .onnx model")
    try:
        return onnx.load(path, load_external_data=False)
    except DecodeError as exc:
        raise TwdeployError(f"{path}: not a readable ONNX model ({exc}); re-export it") from exc


def _check_opset(model: onnx.ModelProto) -> list[Finding]:
    rng = support_data()["opset"]
    versions = [o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    if not versions or rng["min"] <= versions[0] <= rng["max"]:
        return []
    msg = (
        f"default-domain opset {versions[0]} is outside the parser's supported range "
        f"{rng['min']}..{rng['max']}; re-export with opset_version in that range"
    )
    return [Finding("", "", "error", msg)]


def _lint_graph(
    graph: onnx.GraphProto, prefix: str, outer_constants: frozenset[str], out: list[Finding], top: bool
) -> None:
    """Check every node of ``graph`` and its subgraphs; constants of enclosing graphs are visible."""
    constants = outer_constants | {t.name for t in graph.initializer}
    constants |= {t.values.name for t in graph.sparse_initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == "Constant" and n.domain in _DEFAULT_DOMAINS}
    ops = support_data()["operators"]
    producers: dict[str, tuple[str, str]] = {}
    for i, node in enumerate(graph.node):
        name = prefix + (node.name or f"{node.op_type}#{i}")
        producers.update({o: (name, node.op_type) for o in node.output if o})
        if node.domain not in _DEFAULT_DOMAINS:
            out.append(
                _finding(
                    node,
                    name,
                    f"custom domain '{node.domain}': the parser imports it only as a "
                    f"TensorRT plugin registered as '{node.op_type}'",
                )
            )
            continue
        entry = ops.get(node.op_type)
        if entry is None or not entry["supported"]:
            listed = "not in" if entry is None else "listed as unsupported in"
            hint = f"; {entry['hint']}" if entry and "hint" in entry else ""
            out.append(
                _finding(node, name, f"{node.op_type} is {listed} TensorRT's ONNX-parser support list{hint}")
            )
        else:
            out.extend(_check_node(node, name, entry, constants))
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for k, sub in enumerate(subgraphs):
                tag = attr.name if attr.type == onnx.AttributeProto.GRAPH else f"{attr.name}[{k}]"
                _lint_graph(sub, f"{name}/{tag}/", constants, out, top=False)
    out.extend(_check_dtypes(graph, producers, top))


def _check_node(
    node: onnx.NodeProto, name: str, entry: Mapping[str, Any], constants: frozenset[str]
) -> list[Finding]:
    """Restrictions of a supported operator: extra outputs, attribute values, constant inputs."""
    found = []
    if "max_outputs" in entry and sum(1 for o in node.output if o) > entry["max_outputs"]:
        found.append(
            _finding(
                node,
                name,
                f"{node.op_type} uses {sum(1 for o in node.output if o)} outputs; the parser supports only "
                f"the first {entry['max_outputs']} ({entry['restrictions']})",
            )
        )
    rules = entry.get("attributes", {})
    for attr in node.attribute:
        if attr.name not in rules:
            continue
        rule = rules[attr.name]
        value = onnx.helper.get_attribute_value(attr)
        value = value.decode() if isinstance(value, bytes) else value
        if value not in rule["allowed"]:
            allowed = ", ".join(repr(v) for v in rule["allowed"]) or "none; omit the attribute"
            note = f" ({rule['note']})" if "note" in rule else ""
            msg = f"{node.op_type} {attr.name}={value!r} is not supported: allowed {allowed}{note}"
            found.append(_finding(node, name, msg, rule["severity"]))
    for input_name, index in entry.get("constant_inputs", {}).items():
        if index < len(node.input) and node.input[index] and node.input[index] not in constants:
            found.append(
                _finding(
                    node,
                    name,
                    f"{node.op_type} input '{input_name}' must be an initializer or "
                    "Constant; fold constants before building (e.g. onnxsim)",
                )
            )
    return found


def _check_dtypes(
    graph: onnx.GraphProto, producers: Mapping[str, tuple[str, str]], top: bool
) -> list[Finding]:
    """Element types of inputs, outputs, initializers and inferred value_info of one graph.

    Network inputs and outputs get one finding each; other tensors one finding per dtype.
    """
    dtypes = support_data()["dtypes"]
    tensors: dict[str, tuple[int, bool]] = {t.name: (t.data_type, False) for t in graph.initializer}
    for values, is_io in ((graph.input, top), (graph.output, top), (graph.value_info, False)):
        for v in values:
            if v.type.HasField("tensor_type"):
                tensors.setdefault(v.name, (v.type.tensor_type.elem_type, is_io))
    internal: dict[str, list[str]] = {}
    found = []
    for tensor, (elem, is_io) in tensors.items():
        dtype = onnx.TensorProto.DataType.Name(elem)
        if elem == onnx.TensorProto.UNDEFINED or dtype in dtypes["supported"]:
            continue
        if dtype in dtypes["cast_to_float"] and is_io:
            why = "TensorRT makes the binding FLOAT, so the engine's interface differs from the model's"
            found.append(Finding("", "", "error", f"network input/output '{tensor}' is {dtype}: {why}"))
        elif not (is_io and dtype in dtypes["io_only"]):
            internal.setdefault(dtype, []).append(tensor)
    for dtype, names in internal.items():
        if dtype in dtypes["io_only"]:
            severity, why = "warning", "TensorRT supports it only on network inputs and outputs"
        elif dtype in dtypes["cast_to_float"]:
            severity, why = "warning", "TensorRT computes it as FLOAT, clamping to +-FLT_MAX"
        else:
            severity, why = "error", "TensorRT has no such type"
        node, op_type = producers.get(names[0], ("", ""))
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        found.append(Finding(node, op_type, severity, f"tensor '{names[0]}'{more} is {dtype}: {why}"))
    return found


def _finding(node: onnx.NodeProto, name: str, message: str, severity: Severity = "error") -> Finding:
    return Finding(name, node.op_type, severity, message)
