"""ONNX Runtime static INT8 of a CNN with ``--cnn-recipe auto``: each recipe variant (the CNN
recipe, and the graph as exported) is built, and the one closest to the float graph on a
validation slice of the calibration data ships (backends/onnxruntime/variants.py).

Checked independently of the build: each candidate's recorded figures are reproduced by an
explicit single-variant build measured on the calibration data's last third (the validation
slice; the build never sees evaluation data, and the figures differ from the same builds
measured on other images), the chosen one is the closest of them, and the shipped file is
that build. The float fallback is off here (tests/backends/test_fallback.py covers it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.backends import fallback
from modelport.backends.base import BuildOptions
from modelport.calibration_data import CalibrationSet
from modelport.metrics import fidelity
from modelport.registry import get_backend
from modelport.specs import Target

pytestmark = pytest.mark.onnxruntime

FACTORY = Path(__file__).resolve().parents[1] / "graph_prep" / "widened_cnn.py"
CALIB = 48  # the validation slice is its last third: 16 samples
TARGET = Target.parse("onnxruntime:cpu:int8")


def _images(n: int, seed: int) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    return CalibrationSet([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                           for _ in range(n)], source=f"random images (seed {seed})")


def _outputs(path: Path, data: CalibrationSet) -> dict[str, np.ndarray]:
    from modelport.backends.onnxruntime.float_fallback import run

    return run(path, data)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    from modelport.exporters import export_validated
    from modelport.models import resolve_model

    tmp = tmp_path_factory.mktemp("ort-variants")
    model = resolve_model(f"{FACTORY}:make")
    model.onnx_artifact = export_validated(model, tmp / "model.onnx")
    calib = _images(CALIB, seed=0)
    backend = get_backend("onnxruntime")()
    out = {}
    for recipe in ("auto", "bn-fold,equalize,bias-correct", "off"):
        folder = tmp / recipe.replace(",", "+")
        folder.mkdir()
        options = BuildOptions(cnn_recipe=recipe, backends={"onnxruntime": {"max_fallback": 0}})
        out[recipe] = (folder / "model.onnx",
                       backend.build(model, TARGET, calib, folder, options).info)
    return model, calib, out


def test_the_chosen_variant_is_the_closest_on_the_validation_slice(builds):
    model, calib, out = builds
    variants = out["auto"][1]["graph_prep"]["variants"]
    split = variants["validation"]
    assert split["held_apart"] and split["samples"] == CALIB // 3
    assert "last 16 of 48 calibration samples" in split["slice"]
    validation = calib.subset(list(range(CALIB - CALIB // 3, CALIB)))
    reference = _outputs(Path(model.onnx_artifact.path), validation)
    recorded = {c["cnn_recipe"]: c["validation"] for c in variants["candidates"]}
    assert set(recorded) == {"auto", "off"}
    # each candidate's figures, reproduced by an explicit build of that variant alone
    again = {}
    for name, explicit in (("auto", "bn-fold,equalize,bias-correct"), ("off", "off")):
        again[name] = fidelity(_outputs(out[explicit][0], validation), reference,
                               task="generic")
        assert recorded[name]["cosine_mean"] == pytest.approx(again[name]["cosine_mean"],
                                                              abs=1e-6)
        assert recorded[name]["samples"] == CALIB // 3
    names = list(recorded)
    assert variants["chosen"] == names[fallback.closest([again[n] for n in names])]
    # on these widened ranges equalization is what saves INT8 (measured: 60-600x less error)
    assert variants["chosen"] == "auto"
    assert 1 - again["auto"]["cosine_mean"] < (1 - again["off"]["cosine_mean"]) / 4
    # the shipped file is the chosen build
    shipped = _outputs(out["auto"][0], validation)
    chosen = _outputs(out["bn-fold,equalize,bias-correct"][0], validation)
    assert all(np.allclose(shipped[k], chosen[k], atol=1e-6) for k in shipped)


def test_the_validation_slice_is_calibration_data_never_evaluation_data(builds):
    """The figures that chose the variant are the calibration tail's: the same builds
    measured on evaluation images give other figures."""
    model, _, out = builds
    evalset = _images(32, seed=1)
    reference = _outputs(Path(model.onnx_artifact.path), evalset)
    recorded = {c["cnn_recipe"]: c["validation"]
                for c in out["auto"][1]["graph_prep"]["variants"]["candidates"]}
    measured = fidelity(_outputs(out["off"][0], evalset), reference, task="generic")
    assert measured["samples"] == 32 != recorded["off"]["samples"]
    assert measured["cosine_mean"] != pytest.approx(recorded["off"]["cosine_mean"], abs=1e-7)


def test_an_explicit_recipe_builds_that_variant_alone(builds):
    _, _, out = builds
    assert "variants" not in out["off"][1]["graph_prep"]
    assert out["off"][1]["graph_prep"]["applied"] is False
    explicit = out["bn-fold,equalize,bias-correct"][1]["graph_prep"]
    assert explicit["applied"] and "variants" not in explicit
