"""The CPU INT8 recipe table: features named on the command line or taken from this machine,
recorded in the manifest with the recipe chosen, and a warning when a bundle is loaded on a CPU
that lacks an assumed feature. Recorded values only: nothing here depends on this CPU."""

from __future__ import annotations

import json
import warnings

import pytest

from modelport.backends import cpu_recipes
from modelport.backends.cpu_recipes import (
    CpuFeatureWarning,
    CpuRecipe,
    apply_recipe,
    check_host,
    cpu_kind,
    parse_features,
    recipe_row,
)
from modelport.errors import UsageError

VNNI = ("avx2", "fma", "avx512f", "avx512_vnni")
AVX2 = ("avx2", "fma")


def test_parse_features_checks_names_and_suggests():
    assert parse_features("AVX2, fma,avx2") == ("avx2", "fma")
    assert parse_features("none") == ()
    with pytest.raises(UsageError, match="did you mean 'avx512_vnni'"):
        parse_features("avx512vnni")


def test_kinds_follow_vnni():
    assert recipe_row(VNNI) == "vnni" and cpu_kind(VNNI) == "avx512-vnni"
    assert recipe_row(("avx2", "avx_vnni")) == "vnni" and cpu_kind(("avx2", "avx_vnni")) == "avx-vnni"
    assert recipe_row(("avx2", "amx_int8", "amx_bf16")) == "vnni"
    assert cpu_kind(("avx2", "avx512f", "avx512_vnni", "avx512_bf16")) == "avx512-vnni-bf16"
    assert recipe_row(AVX2) == "no-vnni" and cpu_kind(AVX2) == "avx2"
    assert recipe_row(()) == "no-vnni" and cpu_kind(()) == "baseline"


def test_every_cpu_backend_has_a_recipe_for_both_kinds():
    for backend in ("onnxruntime", "openvino"):
        for kind in cpu_recipes.CPU_KINDS:
            recipe = cpu_recipes.RECIPES[(backend, kind)]
            assert recipe.why, (backend, kind)
            from modelport import registry

            fields = registry.get_backend(backend).Options.__dataclass_fields__
            assert set(recipe.settings) <= set(fields), (backend, kind)


def test_recipe_fills_defaults_and_the_users_setting_wins(monkeypatch):
    from modelport.backends.openvino.options import OpenVINOOptions

    monkeypatch.setitem(cpu_recipes.RECIPES, ("openvino", "no-vnni"), CpuRecipe(
        "openvino", "no-vnni", {"model_type": "default", "smooth_quant": False}, "test"))
    opts, info = apply_recipe("openvino", OpenVINOOptions(model_type="transformer"), AVX2)
    assert opts.model_type == "transformer" and opts.smooth_quant is False
    assert info["cpu_features_assumed"] == list(AVX2)
    assert info["cpu_features_source"] == "--cpu-features" and info["cpu_kind"] == "avx2"
    assert info["cpu_recipe"]["applied"] == {"smooth_quant": False}


def test_attention_recipe_keeps_the_default_form_for_other_graphs():
    from modelport.backends.openvino.options import OpenVINOOptions

    recipe = cpu_recipes.RECIPES[("openvino", "no-vnni")]
    assert recipe.applies_to == "attention" and recipe.settings == {"int8_scope": "weights-only"}
    opts, info = apply_recipe("openvino", OpenVINOOptions(), AVX2, attention=True)
    assert opts.int8_scope == "weights-only"
    assert info["cpu_recipe"]["applied"] == {"int8_scope": "weights-only"}
    opts, info = apply_recipe("openvino", OpenVINOOptions(), AVX2, attention=False)
    assert opts.int8_scope is None and info["cpu_recipe"]["applied"] == {}
    assert "this graph has none" in info["cpu_recipe"]["why"]


def test_ort_full_range_weights_only_for_vnni_graphs_without_attention():
    """VNNI sums u8 x s8 products in int32, so a CNN gets full 8-bit weights there; an AVX2
    build and an attention graph (dynamic MatMul INT8) keep the 7-bit safe form."""
    from modelport.backends.onnxruntime.options import OnnxRuntimeOptions
    from modelport.backends.onnxruntime.quantize import reduce_range

    opts, info = apply_recipe("onnxruntime", OnnxRuntimeOptions(), VNNI, attention=False)
    assert not reduce_range(opts) and info["cpu_recipe"]["applied"] == {"full_range": True}
    assert "saturate" in info["cpu_recipe"]["risk"]
    opts, info = apply_recipe("onnxruntime", OnnxRuntimeOptions(), VNNI, attention=True)
    assert reduce_range(opts) and info["cpu_recipe"]["applied"] == {}
    assert "risk" not in info["cpu_recipe"]
    opts, info = apply_recipe("onnxruntime", OnnxRuntimeOptions(), AVX2, attention=False)
    assert reduce_range(opts) and info["cpu_recipe"]["applied"] == {}


def test_default_is_the_build_machines_features(monkeypatch):
    from modelport.backends.onnxruntime.options import OnnxRuntimeOptions

    monkeypatch.setattr(cpu_recipes, "host_features", lambda: VNNI)
    _, info = apply_recipe("onnxruntime", OnnxRuntimeOptions(), None)
    assert info["cpu_features_assumed"] == list(VNNI) and info["cpu_recipe_row"] == "vnni"
    assert info["cpu_features_source"] == "build machine"


def test_check_host_warns_only_for_missing_features():
    manifest = {"target": "openvino:cpu:int8",
                "build": {"cpu_features_assumed": list(VNNI), "cpu_kind": "avx512-vnni"}}
    with pytest.warns(CpuFeatureWarning, match="avx512f, avx512_vnni"):
        assert check_host(manifest, here=AVX2) == ["avx512f", "avx512_vnni"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_host(manifest, here=VNNI + ("avx512_bf16",)) == []
        assert check_host({"build": {}}, here=()) == []  # fp32 bundles assume nothing


def test_bundle_built_for_vnni_records_it_and_warns_on_load_here(tmp_path, monkeypatch):
    """An ORT INT8 bundle built with --cpu-features for a VNNI CPU, loaded on an AVX2 one."""
    import modelport
    from modelport.backends.base import BuildOptions

    result = modelport.export("builtin:digits-cnn", ["onnxruntime:cpu:int8"], out=tmp_path,
                              bench=None, progress=False,
                              options=BuildOptions(cpu_features=("avx2", "avx512_vnni")))
    bundle = result.bundles["onnxruntime:cpu:int8"]
    build = json.loads((bundle / "manifest.json").read_text())["build"]
    assert build["cpu_features_assumed"] == ["avx2", "avx512_vnni"]
    assert build["cpu_kind"] == "avx512-vnni" and build["cpu_features_source"] == "--cpu-features"
    assert build["cpu_recipe"]["why"] == cpu_recipes.RECIPES[("onnxruntime", "vnni")].why
    assert build["cpu_recipe"]["applied"] == {"full_range": True}  # a CNN: 8-bit weights
    monkeypatch.setattr(cpu_recipes, "host_features", lambda: AVX2)
    with pytest.warns(CpuFeatureWarning, match="lacks it: its full-range 8-bit weights"):
        session = modelport.load(bundle)
    session.close()


def test_cli_flag_rejects_an_unknown_feature(tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("export", "builtin:digits-cnn", "--target", "onnxruntime:cpu:int8",
                   "--cpu-features", "avx2,vnni", "--out", str(tmp_path / "b"), "--no-bench")
    assert proc.returncode == 2, proc.stderr
    assert "unknown CPU feature 'vnni'" in proc.stderr and not (tmp_path / "b").exists()

