"""TFLite full-integer INT8 of a CNN with ``--cnn-recipe auto``: each recipe variant (the CNN
recipe, and the graph as exported) is built, and the one closest to the EXPORTED float graph
on a validation slice of the calibration data ships (backends/tflite/variants.py).

Checked independently of the build: the shipped file's figures on the calibration data's last
third (the validation slice) are the chosen candidate's recorded ones; the as-exported
candidate's figures are reproduced by an explicit ``--cnn-recipe off`` build; the chosen one
is the closest by ``fallback.closest``; an explicit recipe builds one variant. The float
fallback is off here (tests/backends/test_fallback.py covers it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.backends import fallback
from modelport.backends.base import Artifact, BuildOptions
from modelport.calibration_data import CalibrationSet
from modelport.registry import get_backend
from modelport.specs import Target

pytestmark = [pytest.mark.tflite, pytest.mark.slow]  # three TFLite builds, two onnx2tf runs

FACTORY = Path(__file__).resolve().parents[1] / "graph_prep" / "widened_cnn.py"
CALIB = 48  # the validation slice is its last third: 16 samples
TARGET = Target.parse("tflite:cpu:int8")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    pytest.importorskip("onnx2tf")
    from modelport.exporters import export_validated
    from modelport.models import resolve_model

    tmp = tmp_path_factory.mktemp("tflite-variants")
    model = resolve_model(f"{FACTORY}:make")
    model.onnx_artifact = export_validated(model, tmp / "model.onnx")
    rng = np.random.default_rng(0)
    calib = CalibrationSet([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                            for _ in range(CALIB)], source="random images")
    backend = get_backend("tflite")()
    out = {}
    for recipe in ("auto", "off"):
        folder = tmp / recipe
        folder.mkdir()
        options = BuildOptions(cnn_recipe=recipe, backends={"tflite": {"max_fallback": 0}})
        out[recipe] = backend.build(model, TARGET, calib, folder, options)
    return model, calib, out


def _validation_figures(model, calib, artifact: Artifact):
    from modelport.backends.tflite.variants import measure

    return measure(artifact, calib.subset(list(range(CALIB - CALIB // 3, CALIB))), model)


def test_the_closest_variant_on_the_validation_slice_ships(builds):
    model, calib, out = builds
    variants = out["auto"].info["graph_prep"]["variants"]
    split = variants["validation"]
    assert split["held_apart"] and split["samples"] == CALIB // 3
    recorded = {c["cnn_recipe"]: c["validation"] for c in variants["candidates"]}
    assert set(recorded) == {"auto", "off"}
    order = [c["cnn_recipe"] for c in variants["candidates"]]
    assert variants["chosen"] == order[fallback.closest([recorded[v] for v in order])]
    shipped = _validation_figures(model, calib, out["auto"])
    assert shipped["cosine_mean"] == pytest.approx(recorded[variants["chosen"]]["cosine_mean"],
                                                   abs=1e-6)
    # the as-exported candidate is what an explicit --cnn-recipe off builds
    alone = _validation_figures(model, calib, out["off"])
    assert alone["cosine_mean"] == pytest.approx(recorded["off"]["cosine_mean"], abs=1e-6)


def test_an_explicit_recipe_builds_one_variant(builds):
    _, _, out = builds
    assert "variants" not in (out["off"].info.get("graph_prep") or {})
