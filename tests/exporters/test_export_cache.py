"""The export cache: a second export of the same model reuses the graph, anything the graph
depends on changes the key, and a cached graph that no longer matches torch is caught by the
validation and replaced. Real dynamo exports of a 12-16-3 MLP, real ONNX Runtime checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.catalog_support import write_mlp_factory

pytestmark = pytest.mark.onnxruntime


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELPORT_EXPORT_CACHE", raising=False)
    return tmp_path / "cache" / "onnx"


@pytest.fixture(scope="module")
def factory(tmp_path_factory):
    return write_mlp_factory(tmp_path_factory.mktemp("cache-mlp") / "mlp.py")


def _model(factory):
    from modelport.models import resolve_model

    return resolve_model(f"{factory}:make")


def test_second_export_is_a_validated_hit_with_the_same_graph(cache, factory, tmp_path):
    from modelport.exporters import export_validated

    first = export_validated(_model(factory), tmp_path / "a.onnx")
    assert first.cache == "" and first.cache_key
    assert [p.name for p in cache.iterdir()] == [first.cache_key]
    second = export_validated(_model(factory), tmp_path / "b.onnx")
    assert second.cache == "hit" and second.cache_key == first.cache_key
    assert second.exporter == first.exporter and second.opset == first.opset
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert second.validation["max_abs_err"] < 1e-4  # checked against torch again


def test_weights_opset_and_example_inputs_change_the_key(factory):
    import torch

    from modelport.exporters.export_cache import export_key

    model = _model(factory)
    base = export_key(model, opset=None, simplify=False)
    assert export_key(_model(factory), opset=None, simplify=False) == base  # deterministic
    assert export_key(model, opset=17, simplify=False) != base
    assert export_key(model, opset=None, simplify=True) != base
    with torch.no_grad():
        model.module.net[0].weight[0, 0] += 1e-3
    assert export_key(model, opset=None, simplify=False) != base
    other = _model(factory)
    other.example_inputs = {k: v + 1 for k, v in other.example_inputs.items()}
    assert export_key(other, opset=None, simplify=False) != base
    other = _model(factory)
    other.module.train()
    assert export_key(other, opset=None, simplify=False) != base


def test_a_cached_graph_that_no_longer_matches_torch_is_replaced(cache, factory, tmp_path,
                                                                    caplog):
    """Poison the entry with the graph of different weights (same inputs and outputs): the
    validation refuses it, the entry is dropped, and the fresh export is stored and correct."""
    import onnx
    from onnx import numpy_helper

    from modelport.exporters import export_validated

    first = export_validated(_model(factory), tmp_path / "a.onnx")
    entry = cache / first.cache_key / "model.onnx"
    proto = onnx.load(str(entry))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3.0, init.name))
    onnx.save(proto, str(entry))
    with caplog.at_level("WARNING", logger="modelport"):
        again = export_validated(_model(factory), tmp_path / "b.onnx")
    assert "failed validation" in caplog.text and "exporting again" in caplog.text
    assert again.cache == "" and again.validation["max_abs_err"] < 1e-4
    assert entry.read_bytes() == (tmp_path / "a.onnx").read_bytes()  # the good graph again


def test_turned_off_it_neither_reads_nor_writes(cache, factory, tmp_path, monkeypatch):
    from modelport.exporters import export_validated

    monkeypatch.setenv("MODELPORT_EXPORT_CACHE", "0")
    for name in ("a.onnx", "b.onnx"):
        artifact = export_validated(_model(factory), tmp_path / name)
        assert artifact.cache == "" and artifact.cache_key == ""
    assert not cache.exists()


def test_the_manifest_says_the_graph_came_from_the_cache(cache, factory, tmp_path):
    import modelport

    for run in ("first", "second"):
        result = modelport.export(f"{factory}:make", ["onnxruntime:cpu:fp32"],
                                  out=tmp_path / run, bench=None, progress=False)
        manifest = json.loads((result.bundles["onnxruntime:cpu:fp32"] / "manifest.json")
                              .read_text())
        assert manifest["export"]["from_cache"] is (run == "second")
        assert manifest["export"]["validation"]["max_abs_err"] < 1e-4


def test_least_recently_used_entries_go_first(cache, tmp_path, monkeypatch):
    import os
    import time

    from modelport.exporters import export_cache

    monkeypatch.setattr(export_cache, "MAX_ENTRIES", 2)
    src = tmp_path / "graph.onnx"
    src.write_bytes(b"x" * 1000)
    for i, key in enumerate(("a" * 32, "b" * 32, "c" * 32)):
        export_cache.store(key, src, {"exporter": "dynamo"})
        os.utime(cache / key, (time.time() - 100 + i, time.time() - 100 + i))
        if key == "b" * 32:  # 'a' is used again after 'b' was stored: 'b' is now the oldest
            assert export_cache.lookup("a" * 32, tmp_path / "out.onnx") is not None
    assert sorted(p.name for p in cache.iterdir()) == ["a" * 32, "c" * 32]
    monkeypatch.setattr(export_cache, "MAX_TOTAL_BYTES", 1500)  # one graph's worth
    export_cache.store("d" * 32, src, {"exporter": "dynamo"})
    assert [p.name for p in cache.iterdir()] == ["d" * 32]
