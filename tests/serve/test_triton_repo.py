"""`modelport triton-repo`: the written config.pbtxt parses with Triton's own model_config.proto
and says the right backend, dims and batching; each model's 1/ is still a verifiable bundle."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.catalog_support import assert_user_error, write_tiny_onnx

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino]

ORT, OV, TRT = "onnxruntime:cpu:fp32", "openvino:cpu:fp32", "tensorrt:cuda:fp32"


@pytest.fixture(scope="module")
def model_config():
    """Triton's ModelConfig message, from the model_config_pb2 that tritonclient ships (built
    by Triton from its model_config.proto). Loaded by file: tritonclient.grpc's __init__ needs
    grpcio, and the http extra does not bring it."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None:
        pytest.skip('tritonclient not installed (pip install "modelport[dev]")')
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    from google.protobuf import text_format

    def parse(config: Path):
        return text_format.Parse(config.read_text(), module.ModelConfig())
    parse.pb2 = module
    return parse


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """A tiny text-like graph (int64 ids [batch, seq] -> float [batch, 4]) for ORT, OpenVINO and
    TensorRT (the ONNX + recipe; no engine)."""
    import modelport

    root = tmp_path_factory.mktemp("triton-bundles")
    result = modelport.export(str(write_tiny_onnx(root / "tiny.onnx")), [ORT, OV, TRT],
                              out=root / "tiny", bench=None, progress=False)
    return {t: Path(result.bundles[t]) for t in (ORT, OV, TRT)}


def main(*argv: str) -> int:
    from modelport.cli import main as cli_main

    return cli_main(["-q", *argv])


def test_ort_and_openvino_configs_parse_with_tritons_proto(bundles, model_config, tmp_path, capsys):
    from modelport.bundle.verify import verify_bundle

    repo = tmp_path / "repo"
    assert main("triton-repo", str(bundles[ORT]), "--name", f"tiny-ov={bundles[OV]}",
                "--out", str(repo), "--instances", "2", "--max-batch-delay-ms", "1.5") == 0
    assert sorted(p.name for p in repo.iterdir()) == ["tiny-onnxruntime-cpu-fp32", "tiny-ov"]
    for name, backend, file in (("tiny-onnxruntime-cpu-fp32", "onnxruntime", "model.onnx"),
                                ("tiny-ov", "openvino", "model.xml")):
        config = model_config(repo / name / "config.pbtxt")
        assert (config.name, config.backend, config.default_model_filename) == (name, backend, file)
        assert config.max_batch_size == 32  # every tensor leads with the dynamic batch axis
        (ids,) = config.input
        assert (ids.name, ids.data_type, list(ids.dims)) == ("ids", model_config.pb2.TYPE_INT64,
                                                             [-1])  # seq is dynamic
        (emb,) = config.output
        assert (emb.name, emb.data_type, list(emb.dims)) == ("embedding",
                                                             model_config.pb2.TYPE_FP32, [4])
        assert config.HasField("dynamic_batching")
        assert config.dynamic_batching.max_queue_delay_microseconds == 1500
        (group,) = config.instance_group
        assert (group.count, group.kind) == (2, model_config.pb2.ModelInstanceGroup.KIND_CPU)
        assert (repo / name / "1" / file).is_file()
        report = verify_bundle(repo / name / "1")  # the copy is the whole bundle, unchanged
        assert report["outputs_checked"] and report["metrics"]["cosine_min"] > 0.9999
    out = capsys.readouterr().out
    assert "tiny-ov: openvino:cpu:fp32 -> openvino" in out
    assert "precision hint" in out  # Triton's backend does not apply the bundle's f32 hint


def test_options_and_existing_repository(bundles, model_config, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main("triton-repo", str(bundles[ORT]), "--out", str(repo), "--no-dynamic-batching",
                "--max-batch", "4") == 0
    config = model_config(repo / "tiny-onnxruntime-cpu-fp32" / "config.pbtxt")
    assert config.max_batch_size == 4 and not config.HasField("dynamic_batching")
    # adding to an existing repository: the same name again is refused, --force replaces it
    assert main("triton-repo", str(bundles[ORT]), "--out", str(repo)) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main("triton-repo", str(bundles[ORT]), "--out", str(repo), "--force") == 0
    config = model_config(repo / "tiny-onnxruntime-cpu-fp32" / "config.pbtxt")
    assert config.max_batch_size == 32 and config.HasField("dynamic_batching")
    assert main("triton-repo", str(bundles[ORT]), "--name", f"other={bundles[OV]}",
                "--out", str(repo), "--force") == 0
    assert sorted(p.name for p in repo.iterdir()) == ["other", "tiny-onnxruntime-cpu-fp32"]
    # two bundles under one name, a bad --name: refused before anything is written
    capsys.readouterr()
    assert main("triton-repo", "--name", f"x={bundles[ORT]}", "--name", f"x={bundles[OV]}",
                "--out", str(tmp_path / "r2")) == 2
    assert "--name NAME=BUNDLE" in capsys.readouterr().err
    assert main("triton-repo", "--name", f"../x={bundles[ORT]}", "--out", str(tmp_path / "r2")) == 2
    assert "not usable in a Triton repository" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def _fake_engine(bundle: Path, key: str, cc: str, built_at: str, *, onnx_sha: str | None = None):
    """An engine file and its record as `modelport build` leaves them (no GPU needed: the
    repository only reads records and checksums)."""
    from modelport.backends.tensorrt.engine import Recipe

    manifest = json.loads((bundle / "manifest.json").read_text())
    recipe = Recipe.from_dict(manifest["build"]["tensorrt"])
    data = f"engine {key}".encode()
    (bundle / "engines").mkdir(exist_ok=True)
    (bundle / "engines" / f"{key}.engine").write_bytes(data)
    record = {"gpu_name": f"GPU {cc}", "compute_capability": cc, "tensorrt_version": "10.9.0",
              "onnx_sha256": onnx_sha or manifest["files"]["model.onnx"],
              "recipe_sha256": recipe.sha256(), "built_at": built_at,
              "engine_sha256": hashlib.sha256(data).hexdigest()}
    (bundle / "engines" / f"{key}.json").write_text(json.dumps(record))


def test_tensorrt_needs_a_built_engine(bundles, model_config, tmp_path):
    bundle = shutil.copytree(bundles[TRT], tmp_path / "trt")
    repo = tmp_path / "repo"
    done = run_cli("triton-repo", str(bundle), "--out", str(repo), timeout=120)
    assert_user_error(done, "modelport build", "not an engine")
    assert not repo.exists()
    _fake_engine(bundle, "a100-old", "8.0", "2026-01-01T00:00:00+00:00")
    _fake_engine(bundle, "a100-new", "8.0", "2026-02-01T00:00:00+00:00")
    _fake_engine(bundle, "h200", "9.0", "2026-01-15T00:00:00+00:00")
    _fake_engine(bundle, "stale", "8.6", "2026-03-01T00:00:00+00:00", onnx_sha="0" * 64)
    assert main("triton-repo", str(bundle), "--out", str(repo), "--max-batch", "100") == 0
    config = model_config(repo / "tiny-tensorrt-cuda-fp32" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and not config.backend
    assert config.default_model_filename == "engines/a100-new.engine"  # the newest valid one
    assert dict(config.cc_model_filenames) == {"8.0": "engines/a100-new.engine",
                                               "9.0": "engines/h200.engine"}
    assert config.max_batch_size == 64  # the engine's profile (batch 1..64) caps --max-batch
    assert config.instance_group[0].kind == model_config.pb2.ModelInstanceGroup.KIND_GPU
    assert (repo / "tiny-tensorrt-cuda-fp32" / "1" / "engines" / "h200.engine").is_file()


def test_tflite_is_refused_with_the_reason(bundles, tmp_path):
    bundle = shutil.copytree(bundles[ORT], tmp_path / "tflite")
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "target": "tflite:cpu:fp32"}))
    from modelport.errors import UsageError
    from modelport.serve.triton_repo import write_repo

    with pytest.raises(UsageError, match="Triton has no TFLite backend"):
        write_repo([(bundle, None)], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_batch_axis_and_shapes():
    """Tensors that do not all lead with one dynamic axis get max_batch_size 0 and full dims; a
    [batch] tensor gets dims [1] reshaped to a scalar per request."""
    from types import SimpleNamespace

    from modelport.serve.triton_repo import ModelPlan, RepoOptions, config_text
    from modelport.specs import Target, TensorSpec

    def plan(inputs, outputs):
        bundle = SimpleNamespace(inputs=inputs, outputs=outputs, path=Path("b"),
                                 target=Target("onnxruntime", "cpu", "fp32"),
                                 manifest={"target": "onnxruntime:cpu:fp32"})
        return config_text(ModelPlan("m", bundle, {"backend": "onnxruntime"}, "model.onnx"),
                           RepoOptions())
    two_axes = plan([TensorSpec("input_ids", "int64", ("texts", "seq")),
                     TensorSpec("pixel_values", "float32", ("images", 3, 8, 8))],
                    [TensorSpec("logits", "float32", ("images", "texts"))])
    assert "max_batch_size: 0" in two_axes and "dims: [ -1, 3, 8, 8 ]" in two_axes
    assert "dynamic_batching" not in two_axes
    scalar = plan([TensorSpec("x", "float32", ("batch", 3))], [TensorSpec("y", "int64", ("batch",))])
    assert "max_batch_size: 32" in scalar and "reshape: { shape: [ ] }" in scalar
