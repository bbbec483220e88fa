"""The KV-cache graph of a language model, fused for ONNX Runtime before it is built.

The dynamo export writes each RMSNorm as Pow -> ReduceMean -> Add -> Sqrt -> Reciprocal -> Mul
-> Mul, a form ORT's own graph optimizer does not fuse; ``onnxruntime.transformers.optimizer``
does (SimplifiedLayerNormalization, with the residual Add folded in as
SkipSimplifiedLayerNormalization). On a decode step (one token) every node costs per-call
overhead that is comparable to its arithmetic, so node count matters: a 12-layer Llama went
from 798 to 624 nodes and 1.37x the decode tokens/s (docs/language-models.md, "Against the
field's runtimes"). Only the norm and GELU fusions run; the optimizer's attention fusions
expect other exporters' patterns and are left off: lm_attention.py rewrites the attention of
this exporter's graphs to GroupQueryAttention instead (624 -> 475 nodes), with the rotary
embedding and packed projections inside when the context length is given (-> 180).

The bundle also carries the runtime setting ``spinning: false`` (``build.runtime_settings``,
re-applied at load): ORT's intra-op threads sleep between the ~600 small kernels of a step
instead of spinning. On the shared 2-core machine under load (load average ~8) one decode step
of the same graph went from 16.1 to 8.4 ms; when it was quiet (load ~3) spinning was faster,
2.7 against 3.4 ms: sleeping threads bound the worst case where cores are shared.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger("modelport")

#: FusionOptions switched off: attention and rotary patterns of other exporters
OFF = ("enable_attention", "enable_rotary_embeddings", "enable_qordered_matmul",
       "enable_embed_layer_norm", "enable_bias_gelu", "enable_gelu_approximation")


def fuse_lm_graph(src: Path, dst: Path, context: int | None = None) -> dict[str, Any]:
    """Write the fused graph of ``src`` to ``dst`` (external data beside it when ``src`` has
    it); return the manifest's facts (node counts, fused op types). A graph the optimizer
    cannot read is copied unchanged (reported, never fatal: fusing is only about speed).
    ``context``: the positions the model takes (its rotary tables' length, lm_rotary.py)."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from modelport.backends.onnxruntime.lm_attention import rewrite_attention
    from modelport.backends.onnxruntime.lm_head import keep_last_logits

    external = src.with_name(src.name + ".data").exists()
    before = _count(onnx.load(str(src), load_external_data=False))
    options = FusionOptions("gpt2")
    for name in OFF:
        setattr(options, name, False)
    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(str(src), model_type="gpt2", num_heads=0, hidden_size=0,
                                   optimization_options=options, opt_level=0)
        attention = rewrite_attention(optimized.model, context)  # lm_attention.py
        head = keep_last_logits(optimized.model)  # lm_head.py: prefill's head on one position
        if external:
            optimized.save_model_to_file(str(dst), use_external_data_format=True,
                                         all_tensors_to_one_file=True)
        else:
            optimized.save_model_to_file(str(dst))
    except Exception as exc:  # noqa: BLE001 - an optimizer failure only costs speed
        log.warning("ONNX Runtime LM fusions skipped (%s: %s)", type(exc).__name__, exc)
        shutil.copyfile(src, dst)
        if external:
            shutil.copyfile(src.with_name(src.name + ".data"), dst.with_name(dst.name + ".data"))
        return {"fused": False, "nodes": sum(before.values())}
    finally:
        quiet.setLevel(level)
    after = _count(optimized.model)
    fused = sorted(op for op in after if op not in before)
    log.info("ONNX Runtime LM fusions: %d -> %d nodes (%s)", sum(before.values()),
             sum(after.values()), ", ".join(fused) or "nothing matched")
    return {"fused": True, "nodes_before": sum(before.values()),
            "nodes": sum(after.values()), "fused_ops": {op: after[op] for op in fused},
            "attention": attention, "head": head}


def _count(proto: Any) -> Counter:
    return Counter(node.op_type for node in proto.graph.node)


def build_lm(src: Path, workdir: Path, precision: Any, options: Any,
             context: int | None = None) -> Any:
    """The ORT artifact of a KV-cache graph at FP32 or weight-only INT4 / INT8WO: fused
    (fuse_lm_graph), then packed (weight_only) for the weight-only precisions."""
    from modelport.backends.base import Artifact
    from modelport.specs import Precision

    dst = workdir / "model.onnx"
    if precision == Precision.FP32:
        info = fuse_lm_graph(src, dst, context)
        files = ["model.onnx"] + (["model.onnx.data"] if (workdir / "model.onnx.data").exists()
                                  else [])
        return _with_settings(Artifact(workdir, "model.onnx", files,
                                       {"precision": "fp32", "lm_fusions": info}), info)
    from modelport.backends.onnxruntime.weight_only import quantize_weight_only

    fused_dir = workdir / "_fused"
    fused_dir.mkdir(exist_ok=True)
    try:
        fusions = fuse_lm_graph(src, fused_dir / "model.onnx", context)
        info = quantize_weight_only(fused_dir / "model.onnx", dst, precision, options)
    finally:
        shutil.rmtree(fused_dir, ignore_errors=True)
    return _with_settings(Artifact(workdir, "model.onnx", ["model.onnx"],
                                   {**info, "lm_fusions": fusions}), fusions)


#: runtime settings of every ORT LM bundle (backends/runtime_settings.py)
LM_SETTINGS = {"spinning": False}


def _with_settings(artifact: Any, fusions: dict[str, Any]) -> Any:
    """LM_SETTINGS, and ``kv_buffer: shared`` when the attention rewrite lets the KV cache be
    one preallocated buffer per layer that every step writes into (kv_buffer.py)."""
    settings = dict(LM_SETTINGS)
    if (fusions.get("attention") or {}).get("kv_buffer") == "shared":
        settings["kv_buffer"] = "shared"
    for where in (artifact.info, artifact.session_options):
        where["runtime_settings"] = {**(where.get("runtime_settings") or {}), **settings}
    return artifact
