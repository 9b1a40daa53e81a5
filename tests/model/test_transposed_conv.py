"""``rules.transposed_conv2d`` is ``F.conv_transpose2d`` (values, layout, gradients), written as a Conv where it can."""

from __future__ import annotations

import io
import itertools
import warnings
from collections import Counter

import onnx
import pytest
import torch
import torch.nn.functional as F

from twdeploy.export.lint import has_errors, lint_model
from twdeploy.model.rules import transposed_conv2d

KERNELS = [(1, 1), (2, 2), (3, 3), (5, 5), (7, 7), (1, 3), (3, 2)]
STRIDES = [(1, 1), (2, 2), (3, 3), (1, 2)]
SIZES = [(7, 8), (8, 7)]  # odd and even, in both dims
CL = torch.channels_last


def geometries(kernel: tuple[int, int], stride: tuple[int, int], sizes=SIZES, dilations=((1, 1), (2, 2))):
    """(size, padding, dilation, output_padding) of every legal case: paddings 0..k (k crops at stride 1)."""
    for size, dilation in itertools.product(sizes, dilations):
        paddings = {(min(p, kernel[0]), min(p, kernel[1])) for p in range(max(kernel) + 1)}
        for padding, output_padding in itertools.product(sorted(paddings), [(0, 0), (1, 1), (0, 1)]):
            if any(output_padding[d] >= max(stride[d], dilation[d]) for d in range(2)):
                continue  # torch: output padding must be smaller than the stride or the dilation
            out = [
                (size[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1) + 1 + output_padding[d]
                for d in range(2)
            ]
            if min(out) >= 1:
                yield size, padding, dilation, output_padding


def operands(size, kernel, groups, channels_last, requires_grad=False):
    """``s`` (2, 4, *size) and a weight (4, 4 / groups, *kernel): 4 channels in and out (groups 4 is depthwise)."""
    generator = torch.Generator().manual_seed(hash((size, kernel, groups)) % 2**31)
    s = torch.randn(2, 4, *size, dtype=torch.float64, generator=generator)
    w = torch.randn(4, 4 // groups, *kernel, dtype=torch.float64, generator=generator)
    if channels_last:
        s = s.contiguous(memory_format=CL)
    return s.requires_grad_(requires_grad), w.requires_grad_(requires_grad)


@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("kernel", KERNELS, ids=str)
def test_equals_conv_transpose2d(kernel: tuple[int, int], stride: tuple[int, int]) -> None:
    cases = 0
    for (size, padding, dilation, output_padding), groups, layout in itertools.product(
        geometries(kernel, stride), (1, 2, 4), (False, True)
    ):
        s, w = operands(size, kernel, groups, layout)
        args = (stride, padding, output_padding, groups, dilation)
        expected = F.conv_transpose2d(s, w, None, stride, padding, output_padding, groups, dilation)
        got = transposed_conv2d(s, w, *args)
        where = f"size {size} {args}, channels-last {layout}"
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12, msg=lambda m, where=where: f"{where}: {m}")
        assert got.is_contiguous() == expected.is_contiguous(), where
        assert got.is_contiguous(memory_format=CL) == expected.is_contiguous(memory_format=CL), where
        if layout and min(got.shape[2:]) > 1:
            assert got.is_contiguous(memory_format=CL), where
        cases += 1
    assert cases >= 24


@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (5, 5), (3, 2)], ids=str)
def test_gradients_match(kernel: tuple[int, int], stride: tuple[int, int]) -> None:
    for (size, padding, dilation, output_padding), groups, layout in itertools.product(
        geometries(kernel, stride, sizes=[(7, 8)]), (1, 4), (False, True)
    ):
        s, w = operands(size, kernel, groups, layout, requires_grad=True)
        args = (stride, padding, output_padding, groups, dilation)
        expected = F.conv_transpose2d(s, w, None, stride, padding, output_padding, groups, dilation)
        got = transposed_conv2d(s, w, *args)
        upstream = torch.randn(expected.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        want = torch.autograd.grad(expected, (s, w), upstream)
        have = torch.autograd.grad(got, (s, w), upstream)
        for name, g, e in zip(("s", "w"), have, want, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-11, msg=lambda m, n=name, a=args: f"d/d{n} {a}: {m}")


def test_float32_and_bfloat16_close() -> None:
    """Low precision as before: same dtype out, rounding-order differences only."""
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 5e-2)):
        for kernel, stride, padding in (((3, 3), (1, 1), (1, 1)), ((1, 1), (2, 2), (0, 0))):
            s, w = operands((8, 8), kernel, 1, False)
            s, w = s.to(dtype), w.to(dtype)
            expected = F.conv_transpose2d(s.double(), w.double(), None, stride, padding, (1, 1) if stride[0] > 1 else 0)
            got = transposed_conv2d(s, w, stride, padding, (1, 1) if stride[0] > 1 else (0, 0), 1, (1, 1))
            assert got.dtype == dtype
            scale = expected.abs().max()
            torch.testing.assert_close(got.double() / scale, expected / scale, rtol=0, atol=tol)


class _Transposed(torch.nn.Module):
    def __init__(self, kernel: int, stride: int, padding: int, output_padding: int, groups: int = 1) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(8, 8 // groups, kernel, kernel))
        self.geometry = ((stride, stride), (padding, padding), (output_padding, output_padding), groups, (1, 1))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return transposed_conv2d(s, self.weight, *self.geometry)


@pytest.mark.parametrize(
    ("geometry", "conv_transpose"),
    [
        ((3, 1, 1, 0), False),  # stride-1 3x3: a Conv, the flipped weight folded into its initializer
        ((3, 1, 1, 0, 8), False),  # depthwise
        ((1, 2, 0, 1), False),  # 1x1 stride 2: Conv, then Pad / Reshape
        ((1, 2, 0, 0, 2), False),  # ... cropped to the odd output size
        ((3, 2, 1, 1), True),  # strided 3x3 keeps ConvTranspose
    ],
    ids=str,
)
def test_onnx_ops(geometry: tuple[int, ...], conv_transpose: bool) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    module = _Transposed(*geometry).eval()
    s = torch.randn(2, 8, 7, 6)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (s,), buffer, dynamo=False, opset_version=17, input_names=["s"], dynamic_axes={"s": {0: "batch"}}
        )
    proto = onnx.load_from_string(buffer.getvalue())
    ops = Counter(node.op_type for node in proto.graph.node)
    assert ops["ConvTranspose"] == int(conv_transpose), ops
    assert ops["Conv"] == int(not conv_transpose), ops
    initializers = {t.name for t in proto.graph.initializer}
    assert all(n.input[1] in initializers for n in proto.graph.node if n.op_type.startswith("Conv"))  # weight folded
    assert not has_errors(lint_model(proto))
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"s": torch.cat([s, s]).numpy()})[0])
    with torch.no_grad():
        expected = F.conv_transpose2d(s, module.weight, None, *module.geometry)
    torch.testing.assert_close(got, torch.cat([expected, expected]), rtol=1e-5, atol=1e-5)
