"""Names shared by the TFLite build and session: the modules each side needs and the tensor
names a .tflite signature carries. A leaf module, so convert/quantize/session never cycle."""

from __future__ import annotations

import re

#: the interpreter, and the modules building needs on top of it
RUNTIME_MODULE = "ai_edge_litert"
TOOLCHAIN_MODULES = ("tensorflow", "onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx")
SIGNATURE_KEY = "serving_default"
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def signature_name(spec_name: str, index: int, kind: str) -> str:
    """The name a tensor carries in the .tflite signature: the ONNX name when TF accepts it as
    is, else ``input_<i>`` / ``output_<i>`` (position in the ONNX graph)."""
    return spec_name if _SAFE_NAME.match(spec_name) else f"{kind}_{index}"
