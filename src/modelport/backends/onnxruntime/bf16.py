"""Why there is no ``onnxruntime:cpu:bf16``: the CPU execution provider has no bf16 arithmetic.

Checked on onnxruntime 1.32 (2026-12): a graph with a bfloat16 MatMul fails to load with
``NOT_IMPLEMENTED: Could not find an implementation for MatMul(13)``; the CPU EP registers
bf16 only for bit predicates and byte movers (Cast, Identity, Reshape...), and, unlike fp16,
inserts no cast-to-fp32 fallback (microsoft/onnxruntime#20630, #28768; a MatMul/Gemm bf16 PR,
#26317, was closed). The one bf16 switch, ``mlas.enable_gemm_fastmath_arm64_bfloat16``, is for
Arm64 Neoverse only. On x86 the bf16 artifact is OpenVINO's (``openvino:cpu:bf16``).
"""

REFUSAL = ("ONNX Runtime's CPU execution provider has no bf16 kernels (a bf16 MatMul fails to "
           "load: NOT_IMPLEMENTED; microsoft/onnxruntime#20630): use openvino:cpu:bf16, or "
           "onnxruntime:cpu:int8 for a faster ONNX Runtime artifact")
