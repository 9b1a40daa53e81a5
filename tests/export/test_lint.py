"""The TensorRT operator lint on real graphs: torch exports and hand-built ONNX models."""

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from twdeploy.errors import TwdeployError
from twdeploy.export.lint import (
    Finding,
    format_findings,
    has_errors,
    lint_model,
    support_data,
    support_source,
)

FLOAT = TensorProto.FLOAT


def _export(module: torch.nn.Module, *args: torch.Tensor, dynamo: bool = False) -> onnx.ModelProto:
    if dynamo:
        return torch.onnx.export(module, args, dynamo=True, verbose=False).model_proto
    buf = io.BytesIO()
    torch.onnx.export(module, args, buf, dynamo=False, opset_version=17)
    return onnx.load_from_string(buf.getvalue())


def _model(nodes, inputs, outputs, initializers=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _vi(name: str, shape, dtype: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


class PoolWithIndices(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.max_pool2d(x, 2, return_indices=True)


class Unpool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, idx = F.max_pool2d(x, 2, return_indices=True)
        return F.max_unpool2d(y, idx, 2)


class Clean(torch.nn.Module):
    """Conv/ReLU/MaxPool, then a winner-take-all unpool from Equal/Where and ConvTranspose, and TopK."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(4, 4, 2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.relu(self.conv(x))
        p = F.max_pool2d(a, 2)
        back = F.interpolate(p, scale_factor=2, mode="nearest")
        winners = torch.where(torch.eq(a, back), a, torch.zeros_like(a))
        scores = (self.up(p) + winners).sum(dim=(2, 3))
        return winners, torch.topk(scores, 2, dim=1).values


def test_torchscript_maxpool_with_indices_is_flagged():
    model = _export(PoolWithIndices(), torch.randn(1, 3, 8, 8))
    errors = _errors(lint_model(model))
    assert errors
    assert all(f.op_type == "MaxPool" for f in errors)
    assert "outputs" in errors[0].message


def test_torchscript_exporter_refuses_max_unpool_so_a_handbuilt_graph_is_linted():
    with pytest.raises((TypeError, RuntimeError)):
        _export(Unpool(), torch.randn(1, 3, 8, 8))
    model = _model(
        [
            helper.make_node(
                "MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], strides=[2, 2], name="pool"
            ),
            helper.make_node(
                "MaxUnpool", ["y", "idx"], ["z"], kernel_shape=[2, 2], strides=[2, 2], name="unpool"
            ),
        ],
        [_vi("x", [1, 3, 8, 8])],
        [_vi("z", [1, 3, 8, 8])],
    )
    errors = _errors(lint_model(model))
    assert [(f.node, f.op_type) for f in errors] == [("pool", "MaxPool"), ("unpool", "MaxUnpool")]
    assert "outputs" in errors[0].message
    assert "MaxUnpool" in errors[1].message


def test_dynamo_max_unpool_export_is_flagged():
    model = _export(Unpool().eval(), torch.randn(1, 3, 8, 8), dynamo=True)
    ops = {f.op_type for f in _errors(lint_model(model))}
    assert "MaxPool" in ops


def test_clean_export_passes(tmp_path):
    model = _export(Clean(), torch.randn(1, 3, 8, 8))
    present = {n.op_type for n in model.graph.node}
    assert {"Conv", "Relu", "MaxPool", "ConvTranspose", "Equal", "Where", "TopK"} <= present
    assert lint_model(model) == []
    path = tmp_path / "clean.onnx"
    onnx.save(model, path)
    assert lint_model(path) == []
    assert lint_model(str(path)) == []


def test_float64_export_is_flagged():
    model = _export(torch.nn.Linear(4, 2).double(), torch.randn(1, 4, dtype=torch.float64))
    findings = lint_model(model)
    assert has_errors(findings)
    assert any("DOUBLE" in f.message and f.severity == "error" for f in findings)


def test_float64_inside_float32_graph_is_a_warning():
    model = _model(
        [
            helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE),
            helper.make_node("Cast", ["d"], ["y"], to=FLOAT),
        ],
        [_vi("x", [2])],
        [_vi("y", [2])],
    )
    findings = lint_model(model)
    assert [(f.severity, f.op_type) for f in findings] == [("warning", "Cast")]
    assert "DOUBLE" in findings[0].message


@pytest.mark.parametrize("dtype", [TensorProto.COMPLEX64, TensorProto.STRING, TensorProto.UINT16])
def test_types_tensorrt_lacks_are_errors(dtype):
    model = _model(
        [helper.make_node("Identity", ["x"], ["y"])], [_vi("x", [2], dtype)], [_vi("y", [2], dtype)]
    )
    findings = lint_model(model)
    assert findings and all(f.severity == "error" for f in findings)


def test_reduce_sum_with_computed_axes_is_flagged_and_constant_axes_pass():
    def reduce_model(axes_from_input: bool) -> onnx.ModelProto:
        axes = [
            helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([1], np.int64)))
        ]
        if axes_from_input:
            axes = [
                helper.make_node("Shape", ["x"], ["s"]),
                helper.make_node("Slice", ["s", "st", "en"], ["axes"]),
            ]
        return _model(
            [*axes, helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="rsum")],
            [_vi("x", [2, 3])],
            [_vi("y", [2, 1])],
            initializers=[numpy_helper.from_array(np.array([0], np.int64), n) for n in ("st", "en")],
            opset=13,
        )

    errors = _errors(lint_model(reduce_model(True)))
    assert [(f.node, f.op_type) for f in errors] == [("rsum", "ReduceSum")]
    assert "axes" in errors[0].message
    assert lint_model(reduce_model(False)) == []


@pytest.mark.parametrize(
    ("op", "reduction", "severity"),
    [
        ("ScatterND", "add", "error"),
        ("ScatterND", "none", "error"),  # the 10.1 parser rejects any reduction attribute on ScatterND
        ("ScatterElements", "max", "warning"),
    ],
)
def test_scatter_reduction_is_flagged(op, reduction, severity):
    indices = np.array([[0], [2]], np.int64) if op == "ScatterND" else np.array([0, 2], np.int64)
    model = _model(
        [helper.make_node(op, ["x", "i", "u"], ["y"], reduction=reduction, name="scatter")],
        [_vi("x", [4]), _vi("u", [2])],
        [_vi("y", [4])],
        initializers=[numpy_helper.from_array(indices, "i")],
        opset=18,
    )
    findings = lint_model(model)
    assert [(f.node, f.severity) for f in findings] == [("scatter", severity)]
    assert "reduction" in findings[0].message


def test_scatter_nd_without_reduction_passes():
    model = _model(
        [helper.make_node("ScatterND", ["x", "i", "u"], ["y"])],
        [_vi("x", [4]), _vi("u", [2])],
        [_vi("y", [4])],
        initializers=[numpy_helper.from_array(np.array([[0], [2]], np.int64), "i")],
    )
    assert lint_model(model) == []


def test_col2im_and_unlisted_ops_are_errors():
    image_shape = numpy_helper.from_array(np.array([4, 4], np.int64), "image_shape")
    block = numpy_helper.from_array(np.array([2, 2], np.int64), "block")
    model = _model(
        [
            helper.make_node("Col2Im", ["x", "image_shape", "block"], ["y"], name="fold"),
            helper.make_node("BitwiseNot", ["i"], ["j"], name="bnot"),
        ],
        [_vi("x", [1, 4, 9]), _vi("i", [2], TensorProto.INT32)],
        [_vi("y", [1, 1, 4, 4]), _vi("j", [2], TensorProto.INT32)],
        initializers=[image_shape, block],
        opset=18,
    )
    findings = lint_model(model)
    assert [(f.node, f.severity) for f in findings] == [("fold", "error"), ("bnot", "error")]
    assert "ConvTranspose" in findings[0].message  # the hint from the data file


def test_resize_cubic_is_flagged():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    model = _model(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", name="up")],
        [_vi("x", [1, 1, 2, 2])],
        [_vi("y", [1, 1, 4, 4])],
        initializers=[scales],
    )
    findings = lint_model(model)
    assert [(f.node, f.severity) for f in findings] == [("up", "error")]
    assert "cubic" in findings[0].message


def test_opset_outside_range_is_flagged():
    low = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])], opset=8)
    high = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])], opset=21)
    ok = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])], opset=20)
    for model in (low, high):
        findings = lint_model(model)
        assert [(f.node, f.severity) for f in findings] == [("", "error")]
        assert "opset" in findings[0].message
    assert lint_model(ok) == []


def test_custom_domain_is_flagged():
    graph = helper.make_graph(
        [helper.make_node("FusedThing", ["x"], ["y"], domain="com.example", name="fused")],
        "g",
        [_vi("x", [2])],
        [_vi("y", [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    findings = lint_model(model)
    assert [(f.node, f.op_type, f.severity) for f in findings] == [("fused", "FusedThing", "error")]
    assert "com.example" in findings[0].message


def test_model_local_function_is_linted_through_its_body():
    body = [helper.make_node("MaxUnpool", ["a", "b"], ["c"], kernel_shape=[2, 2])]
    fn = helper.make_function("local", "Unpool", ["a", "b"], ["c"], body, [helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        [
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Unpool", ["y", "i"], ["z"], domain="local"),
        ],
        "g",
        [_vi("x", [1, 1, 4, 4]), _vi("i", [1, 1, 2, 2], TensorProto.INT64)],
        [_vi("z", [1, 1, 4, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)], functions=[fn]
    )
    assert [f.op_type for f in lint_model(model)] == ["MaxUnpool"]


def test_nested_if_and_loop_bodies_are_linted():
    then_branch = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["t"], keepdims=0)], "then", [], [_vi("t", [])]
    )
    else_branch = helper.make_graph([helper.make_node("Det", ["x"], ["e"])], "else", [], [_vi("e", [])])
    # The Loop body reduces over the axis given by the iteration counter: axes that are not constant.
    loop_body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Unsqueeze", ["iter", "zero"], ["axes"]),
            helper.make_node("ReduceMax", ["x", "axes"], ["m"], keepdims=0, name="rmax"),
        ],
        "loop_body",
        [_vi("iter", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL)],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("m", [2])],
    )
    model = _model(
        [
            helper.make_node("If", ["c"], ["r"], then_branch=then_branch, else_branch=else_branch, name="if"),
            helper.make_node("Loop", ["n", ""], ["scan"], body=loop_body, name="loop"),
        ],
        [_vi("c", [], TensorProto.BOOL), _vi("x", [2, 2]), _vi("n", [], TensorProto.INT64)],
        [_vi("r", []), _vi("scan", ["n", 2])],
        initializers=[numpy_helper.from_array(np.array([0], np.int64), "zero")],
        opset=18,
    )
    ort = pytest.importorskip("onnxruntime")
    x = np.array([[1, 5], [3, 2]], np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    r, scan = session.run(None, {"c": np.array(False), "x": x, "n": np.array(2, np.int64)})
    np.testing.assert_allclose(r, np.linalg.det(x), rtol=1e-6)
    np.testing.assert_array_equal(scan, [[3, 5], [5, 3]])

    errors = _errors(lint_model(model))
    assert [(f.node, f.op_type) for f in errors] == [
        ("if/else_branch/Det#0", "Det"),
        ("loop/body/rmax", "ReduceMax"),
    ]


def test_outer_scope_constants_count_inside_subgraphs():
    body = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"])], "then", [], [_vi("y", [1, 2])]
    )
    model = _model(
        [helper.make_node("If", ["c"], ["r"], then_branch=body, else_branch=body)],
        [_vi("c", [], TensorProto.BOOL), _vi("x", [2, 2])],
        [_vi("r", [1, 2])],
        initializers=[numpy_helper.from_array(np.array([0], np.int64), "axes")],
    )
    assert lint_model(model) == []


def test_format_findings_and_support_data():
    findings = [
        Finding("pool", "MaxPool", "error", "indices output"),
        Finding("cast", "Cast", "warning", "double"),
    ]
    report = format_findings(findings)
    assert report.splitlines()[0].startswith("error")
    assert "pool (MaxPool): indices output" in report
    assert "1 error(s), 1 warning(s)" in report
    assert "operators.md" in support_source() and "10.1" in support_source()
    assert not has_errors(findings[1:])
    ops = support_data()["operators"]
    assert not ops["MaxUnpool"]["supported"] and not ops["Col2Im"]["supported"]
    assert ops["ReduceSum"]["constant_inputs"] == {"axes": 1}


def test_missing_or_corrupt_file_is_a_one_line_error(tmp_path):
    with pytest.raises(TwdeployError, match="no such file"):
        lint_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(TwdeployError, match=r"bad\.onnx"):
        lint_model(bad)
