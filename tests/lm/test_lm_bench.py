"""`bench MODEL` on a language model: `--targets all` (or a device) keeps the targets that
can run a KV cache and lists the others with the reason (the report's LM columns:
tests/lm/test_lora_and_context.py, on a bundle it builds anyway)."""

from __future__ import annotations

from types import SimpleNamespace

from modelport.bench import statuses
from modelport.bench.matrix import expand_targets
from modelport.lm_steps import bench_lm_targets

LM = SimpleNamespace(task="text-generation")


def test_all_means_the_targets_that_apply_to_a_language_model():
    wanted = expand_targets("all")
    kept, skipped = bench_lm_targets(LM, "all", wanted)
    assert kept and not any(t.runtime in ("tflite", "tensorrt") for t in kept)
    assert {r["target"] for r in skipped} == {str(t) for t in wanted
                                             if t.runtime in ("tflite", "tensorrt")}
    assert all(r["status"] == statuses.UNAVAILABLE and "not for language models" in r["reason"]
               for r in skipped)
    cpu = expand_targets("cpu")
    kept_cpu, skipped_cpu = bench_lm_targets(LM, "cpu", cpu)
    assert "onnxruntime:cpu:int8wo" in {str(t) for t in kept_cpu}
    assert {r["target"] for r in skipped_cpu} == {"tflite:cpu:fp32", "tflite:cpu:fp16",
                                                  "tflite:cpu:int8"}
    # named one by one: kept (the export refuses TFLite with its reason); other tasks: all kept
    named = expand_targets("tflite:cpu:fp32,onnxruntime:cpu:fp32")
    assert bench_lm_targets(LM, "tflite:cpu:fp32,onnxruntime:cpu:fp32", named) == (named, [])
    assert bench_lm_targets(SimpleNamespace(task="image-classification"), "all",
                            wanted) == (wanted, [])
