"""Error catalog, part 4: rows specific to one backend (TFLite static shapes, TensorRT engines)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.errors import InputError
from tests.conftest import run_cli
from tests.support.catalog_support import assert_user_error

pytest_plugins = ["tests.support.catalog_fixtures"]

TFLITE = "tflite:cpu:fp32"


@pytest.fixture(scope="module")
def tflite_bundle(mlp, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tflite")
    return modelport.export(f"{mlp}:make", [TFLITE], out=out, bench=None,
                            progress=False).bundles[TFLITE]


@pytest.mark.tflite
def test_feed_tflite_static_shape(tflite_bundle, tmp_path):
    bundle = modelport.bundle.open_bundle(tflite_bundle)
    static = bundle.inputs[0].shape
    assert all(isinstance(d, int) for d in static)  # TFLite artifacts are static
    other = (static[0] + 3, *static[1:])  # another batch size than the one converted
    feeds = {"features": np.zeros(other, np.float32)}
    with modelport.load(tflite_bundle) as session, pytest.raises(InputError) as info:
        session.infer(feeds)
    assert f"must be {static[0]}" in str(info.value) and "static shape" in str(info.value)
    npz = tmp_path / "feeds.npz"
    np.savez(npz, **feeds)
    assert_user_error(run_cli("run", str(tflite_bundle), "--input", str(npz)),
                      f"dimension 0 must be {static[0]}", "static shape")
    # the size it was converted for runs
    with modelport.load(tflite_bundle) as session:
        out = session.infer({"features": np.zeros(static, np.float32)})
    assert next(iter(out.values())).shape[0] == static[0]


def test_bundle_trt_engine_other_gpu(tmp_path):
    """A cached engine from another GPU / TensorRT version / model is never deserialized.

    TensorRT engines only run on the GPU model and TensorRT version that built them; modelport
    ships the ONNX + build recipe and keeps engines in a per-device cache whose record must match
    every fact, and whose sha256 must match the engine file, before it is loaded. (This machine
    has no GPU: the decision is tested directly; the build itself is covered on GPU machines.)
    """
    from modelport.backends.tensorrt.engine import DeviceIdentity, cache_decision
    from modelport.io import sha256_file

    here = DeviceIdentity("NVIDIA H100 80GB HBM3", "9.0", "10.13.3.9")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine bytes")
    record = {**asdict(here), "onnx_sha256": "a" * 64, "recipe_sha256": "b" * 64,
              "engine_sha256": sha256_file(engine)}
    facts = {"device": here, "onnx_sha256": "a" * 64, "recipe_sha256": "b" * 64}
    assert cache_decision(record, engine, **facts)[0]  # the matching engine is reused
    for key, other in (("gpu_name", "NVIDIA GeForce RTX 3080"), ("compute_capability", "8.6"),
                       ("tensorrt_version", "10.0.1"), ("onnx_sha256", "c" * 64)):
        reuse, why = cache_decision({**record, key: other}, engine, **facts)
        assert not reuse and key in why and repr(other) in why, why
    engine.write_bytes(b"tampered engine bytes")
    reuse, why = cache_decision(record, engine, **facts)
    assert not reuse and "does not match its record" in why
