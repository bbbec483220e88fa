"""torch -> ONNX: export, validate against torch, simplify, external data."""

from modelport.exporters.onnx_export import OnnxArtifact, export_onnx
from modelport.exporters.validate import compare_outputs, export_validated, validate

__all__ = ["OnnxArtifact", "compare_outputs", "export_onnx", "export_validated", "validate"]
