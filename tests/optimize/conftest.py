"""What the decision-rule tests of the OpenVINO INT8 search share: a tiny MLP with its
calibration and evaluation feeds, and its export searched with short timing and a loose budget
(NNCF's 8-bit activations on 32 calibration rows of a random MLP vary)."""

from __future__ import annotations

import pytest

import modelport
from modelport.backends.base import BuildOptions
from modelport.metrics import Budget
from modelport.optimize import SearchSettings
from tests.support.catalog_support import write_feeds, write_mlp_factory

OV_INT8 = "openvino:cpu:int8"


@pytest.fixture(scope="module")
def ov_int8_mlp(tmp_path_factory):
    """(model spec, calibration folder, evaluation folder) of the tiny MLP."""
    pytest.importorskip("nncf")
    root = tmp_path_factory.mktemp("mlp")
    return (str(write_mlp_factory(root / "mlp.py")) + ":make",
            write_feeds(root / "calib", 32, seed=1), write_feeds(root / "eval", 16, seed=2))


def export_searched(mlp, out, **options):
    """``mlp`` exported to OpenVINO INT8 with --optimize latency (0.02 s x 2 rounds, no
    cache) into ``out``; ``options``: more BuildOptions fields. Returns the bundle's path."""
    model, calib, evals = mlp
    result = modelport.export(
        model, [OV_INT8], out=out, calib=calib, eval=evals, bench=None, progress=False,
        force=True, budget=Budget(min_cosine=0.5, min_top1_agreement=0.5),
        options=BuildOptions(search=SearchSettings(duration=0.02, rounds=2, cache=False),
                             **options))
    return result.bundles[OV_INT8]
