"""Cross-backend comparison: the same inputs through several artifacts, and per-layer error."""

from modelport.compare.outputs import compare, compare_outputs, text_report

__all__ = ["compare", "compare_outputs", "text_report"]
