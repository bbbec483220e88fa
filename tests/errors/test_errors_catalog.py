"""Error catalog, part 1: model sources, feeds, calibration data and targets.

One test per row of tests/support/error_catalog.py (named ``test_<row id>``). Each drives the real CLI
in a subprocess and the Python API, and checks: one ``error:`` line naming the problem and the
fix, exit code 2, no traceback, nothing half-written (see catalog_support).
"""

from __future__ import annotations

import importlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

import modelport
from modelport import registry
from modelport.errors import (
    CalibrationDataError,
    InputError,
    MissingDependency,
    ModelLoadError,
    TargetUnavailable,
    UnknownTarget,
    UnsupportedOp,
)
from tests.conftest import ROOT, run_cli
from tests.support.catalog_support import (
    assert_nothing_half_written,
    assert_user_error,
    cli_env,
    run_blocked,
    write_feeds,
    write_single_op_onnx,
)
from tests.support.error_catalog import ROWS, markdown

pytest_plugins = ["tests.support.catalog_fixtures"]  # the tiny models and bundles, as fixtures

FP32 = "onnxruntime:cpu:fp32"
INT8 = "onnxruntime:cpu:int8"


def export_fails(tmp_path: Path, model: str | Path, error: type, *fragments: str,
                 target: str = FP32, cli_args: tuple[str, ...] = (),
                 api: dict | None = None, code: int = 2) -> str:
    """The same export through the CLI and the API: the named error, nothing left behind."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    proc = run_cli("export", str(model), "--target", target, "--out", str(out), "--no-bench",
                   *cli_args, env=cli_env(tmp))
    line = assert_user_error(proc, *fragments, code=code)
    assert_nothing_half_written(out, tmp)
    assert not [p for p in out.glob("*") if p.is_dir()] if out.exists() else True
    with pytest.raises(error) as info:
        modelport.export(str(model), [target], out=out, bench=None, progress=False, **(api or {}))
    for fragment in fragments:
        assert fragment.lower() in str(info.value).lower(), (fragment, str(info.value))
    assert "\n" not in str(info.value)
    assert_nothing_half_written(out)
    return line


# -- the catalog itself -------------------------------------------------------------------------
def test_every_row_has_a_test():
    names: set[str] = set()
    for path in sorted(Path(__file__).parent.glob("test_errors_*.py")):
        mod = importlib.import_module(f"tests.errors.{path.stem}")
        names |= {n.removeprefix("test_") for n in dir(mod) if n.startswith("test_")}
    missing = [row.id for row in ROWS if row.id not in names]
    assert not missing, f"catalog rows without a test: {missing}"
    assert len(ROWS) >= 70


def test_docs_table_matches_the_catalog():
    page = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert markdown() in page, ("docs/reliability.md errors table is stale: "
                                "python tests/support/error_catalog.py")


def test_every_error_class_in_the_catalog_exists():
    from modelport import errors

    for row in ROWS:
        if row.says not in ("works", "warning") and not row.says.startswith("exit"):
            assert issubclass(getattr(errors, row.says), errors.ModelportError), row.id


# -- model sources ------------------------------------------------------------------------------
def test_model_missing_path(tmp_path):
    export_fails(tmp_path, tmp_path / "nope.onnx", ModelLoadError, "not found", "builtin:NAME")


def test_model_unknown_builtin(tmp_path):
    export_fails(tmp_path, "builtin:digits-cn", ModelLoadError, "did you mean 'builtin:digits-cnn'")


def test_model_not_a_model_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    export_fails(tmp_path, notes, ModelLoadError, "is not a model file", ".onnx")


def test_model_onnx_truncated(tmp_path, tiny_onnx):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    export_fails(tmp_path, bad, ModelLoadError, "not a readable ONNX model", "re-export")


def test_model_onnx_random_bytes(tmp_path):
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    export_fails(tmp_path, bad, ModelLoadError, "not a readable ONNX model", "re-export")


def test_model_onnx_empty(tmp_path):
    bad = tmp_path / "empty.onnx"
    bad.write_bytes(b"")
    export_fails(tmp_path, bad, ModelLoadError, "is empty")


def test_model_onnx_git_lfs_pointer(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("version https://git-lfs.github.com/spec/v1\n"
                   "oid sha256:4d7a2146...\nsize 90868376\n")
    export_fails(tmp_path, bad, ModelLoadError, "Git LFS pointer", "git lfs pull")


def test_model_onnx_external_data_missing(tmp_path, tiny_onnx):
    import onnx

    model = onnx.load(str(tiny_onnx))
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.onnx.data",
              size_threshold=0)
    (tmp_path / "ext.onnx.data").unlink()
    export_fails(tmp_path, path, ModelLoadError, "ext.onnx.data", "missing", "next to the .onnx")


def test_model_onnx_invalid_graph(tmp_path):
    # Sin is not defined for int8: the ONNX type checker (and ONNX Runtime) refuse the graph
    path = write_single_op_onnx(tmp_path / "sin.onnx", "Sin", TensorProto.INT8, node_name="sin0")
    export_fails(tmp_path, path, ModelLoadError, "invalid model", "sin0", "re-export")


def test_model_onnx_custom_op(tmp_path):
    path = write_single_op_onnx(tmp_path / "custom.onnx", "FancyActivation", TensorProto.FLOAT,
                                domain="com.example", node_name="block1/fancy")
    export_fails(tmp_path, path, UnsupportedOp, "com.example:FancyActivation", "block1/fancy",
                 "another target")


def test_model_onnx_op_without_kernel(tmp_path):
    # a valid graph (Erf is defined for float64) that ONNX Runtime's CPU EP has no kernel for
    path = write_single_op_onnx(tmp_path / "erf.onnx", "Erf", TensorProto.DOUBLE,
                                node_name="gelu/erf")
    export_fails(tmp_path, path, UnsupportedOp, "gelu/erf", "Erf", "another target", "--opset")


def test_model_pt2_other_torch_version(tmp_path, mlp):
    import torch

    from modelport.models.resolve import load_factory

    module = load_factory(mlp, "make").module
    program = torch.export.export(module, (), {"features": torch.randn(2, 12)})
    good = tmp_path / "mlp.pt2"
    torch.export.save(program, str(good))
    # what a newer torch writes: the same archive with a newer serialization schema
    future = tmp_path / "mlp_future.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(future, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("models/model.json"):
                doc = json.loads(data)
                doc["schema_version"] = {"major": 99, "minor": 0}
                data = json.dumps(doc).encode()
            dst.writestr(info, data)
    export_fails(tmp_path, future, ModelLoadError, "another torch version", "re-export",
                 "schema version")


def test_model_factory_missing_function(tmp_path, mlp):
    export_fails(tmp_path, f"{mlp}:nope", ModelLoadError, "has no function 'nope'")


def test_model_factory_raises(tmp_path, mlp):
    export_fails(tmp_path, f"{mlp}:boom", ModelLoadError, "boom()' raised RuntimeError",
                 "weights file is corrupt")


def test_model_factory_wrong_type(tmp_path, mlp):
    export_fails(tmp_path, f"{mlp}:wrong_type", ModelLoadError, "must return a torch.nn.Module",
                 "got str")


def test_model_factory_no_example_inputs(tmp_path, mlp):
    export_fails(tmp_path, f"{mlp}:no_examples", ModelLoadError, "gave no example inputs",
                 "dict of input name -> tensor")


def test_model_forward_fails_on_examples(tmp_path, mlp):
    export_fails(tmp_path, f"{mlp}:bad_examples", ModelLoadError, "on its own example inputs",
                 "fix forward()")


def test_model_unsupported_torch_op(tmp_path, mlp):
    line = export_fails(tmp_path, f"{mlp}:custom_op", UnsupportedOp, "userlib::wobble",
                        "encoder.1 (Wobble)")
    assert "torch IR graph" not in line


def test_model_factory_with_positional_examples_exports(tmp_path, mlp):
    """Regression: positional example inputs were fed as input_0=..., a TypeError traceback."""
    result = modelport.export(f"{mlp}:make_positional", [FP32], out=tmp_path, bench=None,
                              progress=False)
    bundle = modelport.bundle.open_bundle(result.bundles[FP32])
    assert [s.name for s in bundle.inputs] == ["features"]  # named after forward()'s parameter


def test_model_external_data_round_trip(tmp_path, mlp, monkeypatch):
    """The > 2 GB path with the threshold lowered: the same code that a 2 GB model takes."""
    from modelport.exporters import onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 100_000)  # Big has 0.5 MB
    result = modelport.export(f"{mlp}:big", [FP32], out=tmp_path, bench=None, progress=False)
    bundle = modelport.bundle.open_bundle(result.bundles[FP32])
    assert "model.onnx.data" in bundle.manifest["files"]
    assert (bundle.path / "model.onnx").stat().st_size < 100_000  # the weights are outside
    assert (bundle.path / "model.onnx.data").stat().st_size > 500_000
    assert result.rows[1]["fidelity"]["max_abs_err"] < 1e-4
    report = modelport.verify(bundle.path)
    assert report["metrics"]["max_abs_err"] < 1e-4
    proc = run_cli("verify", str(bundle.path))
    assert proc.returncode == 0, proc.stderr
    # a copy without its weights file is refused, naming it
    broken = tmp_path / "copy"
    import shutil

    shutil.copytree(bundle.path, broken)
    (broken / "model.onnx.data").unlink()
    assert_user_error(run_cli("verify", str(broken)), "model.onnx.data", "missing")


# -- feeds --------------------------------------------------------------------------------------
def _infer_fails(bundle: Path, feeds: dict, *fragments: str) -> str:
    with modelport.load(bundle) as session, pytest.raises(InputError) as info:
        session.infer(feeds)
    text = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in text.lower(), (fragment, text)
    assert "\n" not in text
    return text


def _run_fails(tmp_path: Path, bundle: Path, feeds: dict, *fragments: str) -> str:
    npz = tmp_path / "feeds.npz"
    np.savez(npz, **feeds)
    return assert_user_error(run_cli("run", str(bundle), "--input", str(npz)), *fragments)


def test_feed_wrong_name(tiny_bundle, tmp_path):
    feeds = {"input_ids": np.zeros((1, 4), np.int64)}
    _infer_fails(tiny_bundle, feeds, "unknown input(s) ['input_ids']", "ids: int64")


def test_feed_missing_input(tiny_bundle):
    _infer_fails(tiny_bundle, {}, "missing input(s) ['ids']", "ids: int64[batchxseq]")


def test_feed_wrong_rank(tiny_bundle, tmp_path):
    feeds = {"ids": np.zeros((4,), np.int64)}
    _infer_fails(tiny_bundle, feeds, "must have rank 2", "got shape [4]")
    _run_fails(tmp_path, tiny_bundle, feeds, "must have rank 2")


def test_feed_wrong_dtype(mlp_bundle, tmp_path):
    bundle = mlp_bundle
    feeds = {"features": np.zeros((1, 12), np.float64)}
    _infer_fails(bundle, feeds, "must be float32, got float64", ".astype(np.float32)")
    _run_fails(tmp_path, bundle, feeds, "must be float32, got float64")


def test_feed_not_an_array(tiny_bundle):
    _infer_fails(tiny_bundle, {"ids": [[1, 2, 3]]}, "must be a numpy array, got list")


def test_feed_static_dim_mismatch(mlp_bundle, tmp_path):
    feeds = {"features": np.zeros((1, 10), np.float32)}
    _infer_fails(mlp_bundle, feeds, "dimension 1 must be 12", "got 10")
    _run_fails(tmp_path, mlp_bundle, feeds, "dimension 1 must be 12")


def test_feed_dim_outside_exported_range(tiny_bundle, tmp_path):
    feeds = {"ids": np.zeros((1, 12), np.int64)}  # the position table has 8 rows
    _infer_fails(tiny_bundle, feeds, "ONNX Runtime failed at node", "within what the model")
    _run_fails(tmp_path, tiny_bundle, feeds, "ONNX Runtime failed at node")


def test_feed_index_out_of_range(tiny_bundle, tmp_path):
    feeds = {"ids": np.full((1, 4), 99, np.int64)}  # vocabulary of 16
    _infer_fails(tiny_bundle, feeds, "node 'token_gather' (Gather)", "[-16,15]")
    line = _run_fails(tmp_path, tiny_bundle, feeds, "node 'token_gather'")
    assert "onnxruntime_src" not in line


def test_feed_npz_wrong_key(tiny_bundle, tmp_path):
    _run_fails(tmp_path, tiny_bundle, {"tokens": np.zeros((1, 4), np.int64)},
               "unknown input(s) ['tokens'] and missing input(s) ['ids']", "ids: int64")


# -- calibration / evaluation data --------------------------------------------------------------
def test_data_missing_path(tmp_path, mlp):
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "does not exist",
                 cli_args=("--calib", str(tmp_path / "nope")),
                 api={"calib": str(tmp_path / "nope")})


def test_data_empty_folder(tmp_path, mlp):
    (tmp_path / "empty").mkdir()
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "has no .npz or .npy files",
                 cli_args=("--calib", str(tmp_path / "empty")),
                 api={"calib": str(tmp_path / "empty")})


def test_data_not_numpy(tmp_path, mlp):
    folder = write_feeds(tmp_path / "feeds", 3)
    (folder / "s001.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "cannot read", "s001.npz",
                 cli_args=("--calib", str(folder)), api={"calib": str(folder)})


def test_data_pickled_npz(tmp_path, mlp):
    folder = write_feeds(tmp_path / "feeds", 3)
    marker = tmp_path / "PWNED"
    np.savez(folder / "s002.npz", features=np.array([_Boom(marker)], dtype=object))
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "s002.npz", "allow_pickle",
                 cli_args=("--calib", str(folder)), api={"calib": str(folder)})
    assert not marker.exists(), "a pickle in calibration data was executed"


class _Boom:
    """Unpickling this would create a marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_data_wrong_input_names(tmp_path, mlp):
    folder = write_feeds(tmp_path / "feeds", 4, name="x")
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "has inputs ['x']",
                 "the model takes ['features']",
                 cli_args=("--calib", str(folder)), api={"calib": str(folder)})


def test_data_nan_inf(tmp_path, mlp):
    folder = write_feeds(tmp_path / "feeds", 6)
    np.savez(folder / "s003.npz", features=np.full((1, 12), np.inf, np.float32))
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "NaN or Inf", "clean the data",
                 cli_args=("--calib", str(folder), "--eval", str(folder)),
                 api={"calib": str(folder), "eval": str(folder)})


def test_data_shapes_disagree(tmp_path, tiny_onnx):
    folder = tmp_path / "feeds"
    folder.mkdir()
    np.savez(folder / "a.npz", ids=np.zeros((1, 4), np.int64))
    np.savez(folder / "b.npz", ids=np.zeros((1, 6), np.int64))
    export_fails(tmp_path, tiny_onnx, CalibrationDataError, "pad or resize samples to one shape",
                 cli_args=("--calib", str(folder), "--eval", str(folder)),
                 api={"calib": str(folder), "eval": str(folder)})


def test_data_dtype_mismatch(tmp_path, mlp):
    folder = write_feeds(tmp_path / "feeds", 4, dtype=np.float64)
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "must be float32",
                 "got float64", ".astype(np.float32)",
                 cli_args=("--calib", str(folder), "--eval", str(folder)),
                 api={"calib": str(folder), "eval": str(folder)})


def test_data_text_for_a_non_text_model(tmp_path, mlp):
    text = tmp_path / "sentences.txt"
    text.write_text("one\ntwo\n")
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "has no tokenizer",
                 "folder of .npz", cli_args=("--calib", str(text)), api={"calib": str(text)})


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """One CLI run of builtin:minilm: --calib has blank lines, --eval is not UTF-8.

    Loading the real MiniLM is the slow part, so both text rows read this one run.
    """
    folder = tmp_path_factory.mktemp("text")
    calib, evals = folder / "calib.txt", folder / "eval.txt"
    calib.write_text("A man plays a guitar.\n\n   \nA dog runs in the park.\n\n", encoding="utf-8")
    evals.write_bytes(b"A cat sleeps.\nCaf\xe9 au lait\n")
    proc = run_cli("export", "builtin:minilm", "--target", INT8, "--calib", str(calib),
                   "--eval", str(evals), "--out", str(folder / "out"), "--no-bench",
                   env=cli_env(folder / "tmp"))
    return proc, folder, calib, evals


def test_data_text_blank_lines(text_run, minilm_tokenizer):
    proc, _, calib, _ = text_run
    assert re.search(r"^warning: .*calib\.txt: skipped 3 blank line\(s\)$", proc.stderr, re.MULTILINE), \
        proc.stderr
    from modelport.calibration_data import from_text_file

    data = from_text_file(calib, *minilm_tokenizer)
    assert data.texts == ["A man plays a guitar.", "A dog runs in the park."]


def test_data_text_invalid_utf8(text_run, minilm_tokenizer):
    proc, folder, _, evals = text_run
    assert_user_error(proc, "eval.txt", "not valid UTF-8 (line 2)", "re-save it as UTF-8")
    assert_nothing_half_written(folder / "out", folder / "tmp")
    from modelport.calibration_data import from_text_file

    with pytest.raises(CalibrationDataError, match=r"not valid UTF-8 \(line 2\)"):
        from_text_file(evals, *minilm_tokenizer)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    """(TextTokenizer, specs) of builtin:minilm, without loading the model."""
    from modelport.calibration_data.text import TextTokenizer
    from modelport.models.minilm import model_dir
    from modelport.specs import TensorSpec

    specs = {n: TensorSpec(n, "int64", ("batch", "seq"))
             for n in ("input_ids", "attention_mask")}
    return TextTokenizer(model_dir() / "tokenizer.json"), specs


def test_data_too_few_to_split(tmp_path, mlp):
    folder = write_feeds(tmp_path / "feeds", 1)
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "too few to split",
                 "separate --calib and --eval", cli_args=("--calib", str(folder)),
                 api={"calib": str(folder)})


def test_data_int8_without_calibration(tmp_path, mlp):
    export_fails(tmp_path, f"{mlp}:make", CalibrationDataError, "need calibration data",
                 "--calib", target=INT8)


def test_data_too_few_samples(tmp_path, mlp, caplog):
    calib = write_feeds(tmp_path / "calib", 9, seed=1)
    evals = write_feeds(tmp_path / "eval", 6, seed=2)
    out = tmp_path / "out"
    proc = run_cli("export", f"{mlp}:make", "--target", INT8, "--calib", str(calib), "--eval",
                   str(evals), "--out", str(out), "--no-bench", "--allow-accuracy-drop")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^warning: calibration set has 9 samples \(fewer than the 100 "
                     r"recommended\)", proc.stderr, re.MULTILINE), proc.stderr
    assert_nothing_half_written(out)
    caplog.set_level("WARNING", logger="modelport")
    modelport.export(f"{mlp}:make", [INT8], out=tmp_path / "api", calib=str(calib),
                     eval=str(evals), bench=None, progress=False, allow_accuracy_drop=True)
    assert "calibration set has 9 samples" in caplog.text


def test_data_calib_eval_overlap(tmp_path, mlp, caplog):
    calib = write_feeds(tmp_path / "calib", 8, seed=1)
    evals = write_feeds(tmp_path / "eval", 3, seed=1)  # the same first 3 samples as calib
    out = tmp_path / "out"
    proc = run_cli("export", f"{mlp}:make", "--target", FP32, "--calib", str(calib), "--eval",
                   str(evals), "--out", str(out), "--no-bench")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^warning: 3 evaluation sample\(s\) also appear in the calibration set",
                     proc.stderr, re.MULTILINE), proc.stderr
    caplog.set_level("WARNING", logger="modelport")
    modelport.export(f"{mlp}:make", [FP32], out=tmp_path / "api", calib=str(calib),
                     eval=str(evals), bench=None, progress=False)
    assert "3 evaluation sample(s) also appear" in caplog.text


# -- targets ------------------------------------------------------------------------------------
def test_target_unknown(tmp_path, tiny_onnx):
    export_fails(tmp_path, tiny_onnx, UnknownTarget, "unknown target 'onnxruntime:cpu:fp23'",
                 "did you mean 'onnxruntime:cpu:fp32'", target="onnxruntime:cpu:fp23")


def test_target_runtime_missing(tmp_path, tiny_onnx):
    out = tmp_path / "out"
    proc = run_blocked(["onnxruntime"], "export", str(tiny_onnx), "--target", FP32, "--out",
                       str(out), "--no-bench")
    assert_user_error(proc, "onnxruntime not installed", 'pip install "modelport[onnxruntime]"')
    assert not out.exists()
    # the API says the same, through the backend's availability check
    from modelport.backends.base import require

    with pytest.raises(MissingDependency, match=r'modelport\[nosuchextra\]'):
        require("no_such_runtime_module", extra="nosuchextra", what="a test runtime")


def _cuda_target() -> str | None:
    """A registered target on a CUDA device whose runtime is installed here (torch:cuda:*)."""
    from modelport.specs import Target

    for name in registry.all_target_names():
        target = Target.parse(name)
        if target.device != "cuda":
            continue
        backend = registry.get_backend(target.runtime)
        reason = backend.availability(target).reason
        if not backend.availability(target).ok and "CUDA" in reason and "install" not in reason:
            return name
    return None


def test_target_device_missing(tmp_path, mlp):
    target = _cuda_target()
    if target is None:
        pytest.skip("no CUDA target registered whose runtime is installed (or CUDA is present)")
    export_fails(tmp_path, f"{mlp}:make", TargetUnavailable, f"cannot build {target}", "CUDA",
                 target=target)
