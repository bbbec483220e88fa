"""Weight-only INT4 / INT8 of builtin:tiny-lm: within the perplexity budget, smaller on disk;
a miss is refused with the numbers; runtimes without a KV-cache path are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelport
from tests.conftest import run_cli

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino]


def _size(bundle: Path) -> int:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return sum((bundle / f).stat().st_size for f in manifest["files"]
               if f.startswith("model."))


def test_weight_only_within_budget_and_smaller(tiny_lm_export):
    _, result, error = tiny_lm_export
    assert error is None
    rows = {r["target"]: r for r in result.rows}
    ref = rows["torch:cpu:fp32"]["perplexity"]
    assert 1.0 < ref < 100.0  # a trained model: its perplexity means something
    for runtime in ("onnxruntime", "openvino"):
        fp32 = _size(result.bundles[f"{runtime}:cpu:fp32"])
        for precision, limit in (("int4", 0.10), ("int8wo", 0.02)):
            target = f"{runtime}:cpu:{precision}"
            manifest = json.loads((result.bundles[target] / "manifest.json").read_text())
            metrics = manifest["accuracy"]["metrics"]
            assert manifest["accuracy"]["passed"], target
            assert metrics["reference_perplexity"] == pytest.approx(ref)
            assert metrics["perplexity"] <= ref * (1 + limit)
            assert metrics["max_perplexity_increase"] == limit
            assert _size(result.bundles[target]) < fp32, target
    assert _size(result.bundles["onnxruntime:cpu:int4"]) < \
        _size(result.bundles["onnxruntime:cpu:int8wo"])


def test_lm_manifests_match_the_json_schema(tiny_lm_export):
    """int4 / int8wo targets and the text-generation task are allowed by the schema."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(modelport.__file__).parent / "bundle/manifest.schema.json")
                        .read_text())
    _, result, _ = tiny_lm_export
    for target, bundle in result.bundles.items():
        manifest = json.loads((bundle / "manifest.json").read_text())
        jsonschema.validate(manifest, schema)
        assert manifest["target"] == target


def test_weight_only_bundles_generate(tiny_lm_export):
    _, result, _ = tiny_lm_export
    prompt = np.array([[5, 6, 7]], np.int64)
    for target in ("onnxruntime:cpu:int4", "openvino:cpu:int8wo"):
        with modelport.load(result.bundles[target]) as session:
            out = session.generate(prompt, max_new_tokens=8)
        assert out[0, :3].tolist() == [5, 6, 7] and 3 < out.shape[1] <= 11


def test_budget_miss_is_refused_with_the_numbers(gpt2_export):
    _, result, error = gpt2_export
    assert error is not None and "onnxruntime:cpu:int4" not in result.bundles
    message = str(error)
    assert "onnxruntime:cpu:int4 misses its accuracy budget" in message
    assert "perplexity" in message and "> 0.10%" in message
    row = next(r for r in result.rows if r["target"] == "onnxruntime:cpu:int4")
    assert row["fidelity"]["perplexity"] > row["fidelity"]["reference_perplexity"]


def test_run_prompt_prints_text(tiny_lm_export):
    _, result, _ = tiny_lm_export
    proc = run_cli("run", str(result.bundles["onnxruntime:cpu:int8wo"]), "--prompt",
                   "The weather", "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    assert text.startswith("The weather") and len(text) > len("The weather")


def test_lm_targets_without_kv_path_are_refused(tmp_path):
    from modelport.errors import UnknownTarget
    from modelport.lm_steps import check_lm_targets
    from modelport.specs import Target

    with pytest.raises(UnknownTarget, match="language-model targets are not supported on tflite"):
        modelport.export("builtin:tiny-lm", ["tflite:cpu:fp32"], out=tmp_path, bench=None)
    with pytest.raises(UnknownTarget, match="not supported on tensorrt: .*TensorRT-LLM"):
        check_lm_targets([Target.parse("tensorrt:cuda:fp16")])


def test_perplexity_budget_flag():
    import argparse

    from modelport.cli.export import add_budget_args, budget_from

    parser = argparse.ArgumentParser()
    add_budget_args(parser)
    budget = budget_from(parser.parse_args(["--max-perplexity-increase", "5"]))
    assert budget.max_perplexity_increase == pytest.approx(0.05)


@pytest.mark.slow
def test_openvino_int4_awq_with_calibration_text(tmp_path, eval_text):
    from modelport.models.data import sentences

    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(sentences()[:64]), encoding="utf-8")
    result = modelport.export("builtin:tiny-lm", ["openvino:cpu:int4"], out=tmp_path / "b",
                              bench=None, calib=calib, eval=eval_text, progress=False,
                              options={"openvino": {"awq": True, "scale_estimation": True}})
    manifest = json.loads((result.bundles["openvino:cpu:int4"] / "manifest.json").read_text())
    assert manifest["build"]["awq"] and manifest["accuracy"]["passed"]


def test_run_text_continues_each_text_as_predict_does(tiny_lm_export):
    _, result, _ = tiny_lm_export
    bundle = result.bundles["onnxruntime:cpu:int8wo"]
    proc = run_cli("run", str(bundle), "--text", "The weather", "--text", "A cat",
                   "--max-new-tokens", "4")
    assert proc.returncode == 0, proc.stderr
    answer = modelport.load(bundle).predict(text=["The weather", "A cat"], max_new_tokens=4)
    assert proc.stdout.strip() == str(answer).strip()  # greedy: the same continuations
    first, second = answer.to_dict()["predictions"]
    assert first["text"].startswith("The weather") and second["text"].startswith("A cat")
