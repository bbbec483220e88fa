"""Weight-only INT4 / INT8 for ONNX Runtime: MatMul weights packed into MatMulNBits blocks.

Activations stay float, so no calibration data is used (round to nearest per block). The
dynamo exporter writes some linear layers (GPT-2's Conv1D) as Gemm, which the quantizer
skips: those with a constant weight are rewritten to MatMul + Add first, so every projection
of the model is packed, not only the Llama-style ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelport.specs import Precision

log = logging.getLogger("modelport")

DEFAULT_BLOCK = 32  # the INT4 group size tiny-lm's hidden size is a multiple of
BITS = {Precision.INT4: 4, Precision.INT8WO: 8}
#: MatMulNBits accuracy_level 4: activations quantized to int8 per block inside the kernel
#: (what onnxruntime-genai's model builder uses on CPU): 1.6x the decode tokens/s of
#: fp32 activations on a 125 M Llama (docs/language-models.md); 0 = ORT's default (fp32)
DEFAULT_ACCURACY_LEVEL = 4


def quantize_weight_only(src: Path, dst: Path, precision: Precision, options: Any
                         ) -> dict[str, Any]:
    """Write the MatMulNBits graph of ``src`` to ``dst``; return the manifest's build facts."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    proto = onnx.load(str(src))
    rewritten = gemm_to_matmul(proto)
    block = options.block_size or DEFAULT_BLOCK
    level = DEFAULT_ACCURACY_LEVEL if options.accuracy_level is None else options.accuracy_level
    quantizer = MatMulNBitsQuantizer(proto, bits=BITS[precision], block_size=block,
                                     is_symmetric=not options.asymmetric,
                                     accuracy_level=level or None)
    quantizer.process()
    packed = quantizer.model.model
    count = sum(1 for n in packed.graph.node if n.op_type == "MatMulNBits")
    onnx.save(packed, str(dst))
    return {"precision": str(precision), "method": "MatMulNBits (round to nearest)",
            "bits": BITS[precision], "block_size": block, "symmetric": not options.asymmetric,
            "accuracy_level": level, "matmuls_packed": count, "gemm_rewritten": rewritten}


def gemm_to_matmul(proto: Any) -> int:
    """Gemm(A, W const, C) with alpha = beta = 1 and transA = 0 -> MatMul(A, W') + C."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    nodes, count = [], 0
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        inputs = list(node.input[:2])
        if attrs.get("transB", 0):  # a new initializer: a tied weight keeps its other users
            array = numpy_helper.to_array(inits[inputs[1]]).T.copy()
            inputs[1] = f"{inputs[1]}_transposed_{count}"
            proto.graph.initializer.append(numpy_helper.from_array(array, inputs[1]))
        if len(node.input) < 3 or not node.input[2]:
            nodes.append(helper.make_node("MatMul", inputs, node.output, node.name))
        else:
            mid = f"{node.output[0]}_matmul"
            nodes.append(helper.make_node("MatMul", inputs, [mid], node.name))
            nodes.append(helper.make_node("Add", [mid, node.input[2]], node.output,
                                          f"{node.name}_bias"))
        count += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return count
