"""The manifest JSON Schema keeps up with the code: every task and fidelity kind a model can be
judged as, and every target name of every registered backend, is allowed by it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

SCHEMA = Path(__file__).resolve().parents[2] / "src/modelport/bundle/manifest.schema.json"


def _schema() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def test_model_task_allows_every_task_and_fidelity_kind():
    from modelport.tasks import FIDELITY_KIND, TASKS

    allowed = set(_schema()["properties"]["model"]["properties"]["task"]["enum"])
    needed = {"embedding", "classification", "generic", *TASKS, *FIDELITY_KIND.values()}
    assert needed <= allowed, f"add to manifest.schema.json model.task: {sorted(needed - allowed)}"


def test_target_pattern_allows_every_registered_target_and_precision():
    from modelport.registry import all_target_names
    from modelport.specs import Precision

    pattern = re.compile(_schema()["properties"]["target"]["pattern"])
    for name in all_target_names():
        assert pattern.match(name), name
    for precision in Precision:
        assert pattern.match(f"onnxruntime:cpu:{precision}"), precision
    assert not pattern.match("onnxruntime:cpu:int3")


def test_a_weight_only_manifest_validates():
    """The fields an int8wo LM bundle writes (tests/lm checks real ones end to end)."""
    jsonschema = pytest.importorskip("jsonschema")
    sha = "0" * 64
    manifest = {
        "schema_version": 1, "modelport_version": "0.1.0", "created_at": "2026-12-02T00:00:00Z",
        "model": {"name": "tiny-lm", "source": "builtin:tiny-lm", "task": "text-generation"},
        "target": "onnxruntime:cpu:int8wo", "runtime": {"name": "onnxruntime", "version": "1"},
        "artifact": {"file": "model.onnx", "sha256": sha, "size_bytes": 1},
        "files": {"model.onnx": sha},
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", "seq", 512]}],
        "accuracy": {"reference": "torch:cpu:fp32", "metrics": {"perplexity": 1.0},
                     "budget": {"max_perplexity_increase": 0.02}, "passed": True},
    }
    jsonschema.validate(manifest, _schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**manifest, "target": "onnxruntime:cpu:int3"}, _schema())
