"""``--simplify``: constant folding and graph clean-up with onnxslim (then linted and verified like any export)."""

from __future__ import annotations

import onnx

from twdeploy.errors import TwdeployError


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph simplified by onnxslim, keeping the model card and every other ``metadata_props`` entry."""
    try:
        import onnxslim
    except ImportError:
        raise TwdeployError("--simplify needs onnxslim: pip install 'twdeploy[simplify]'") from None
    props = {p.key: p.value for p in proto.metadata_props}
    slim = onnxslim.slim(proto)
    if slim is None:
        raise TwdeployError("--simplify: onnxslim could not simplify this graph; export without --simplify")
    del slim.metadata_props[:]
    onnx.helper.set_model_props(slim, props)
    slim.producer_name, slim.producer_version = proto.producer_name, proto.producer_version
    slim.doc_string = proto.doc_string
    onnx.checker.check_model(slim)
    return slim
