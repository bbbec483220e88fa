"""Error catalog, part 2: bundles tampered with, truncated, forged or packed maliciously.

Every case goes through ``modelport verify`` (CLI, subprocess) and the Python API
(``open_bundle`` / ``modelport.load``), and must end in one BundleError line, exit 2.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.bundle import open_bundle, pack_bundle
from modelport.errors import BundleError, BundleExists, ModelportError
from modelport.io import sha256_file
from tests.conftest import run_cli
from tests.support.catalog_support import ROOT, assert_user_error, cli_env, run_blocked

pytest_plugins = ["tests.support.catalog_fixtures"]


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    """A private copy of the tiny bundle to tamper with."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / tiny_bundle.name))


def manifest_of(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def rewrite_manifest(path: Path, edit) -> None:
    data = manifest_of(path)
    edit(data)
    (path / "manifest.json").write_text(json.dumps(data))


def refused(path: Path, *fragments: str, tmp: Path | None = None) -> str:
    """verify (CLI) and open_bundle/load (API) both refuse with every fragment named."""
    env = cli_env(tmp) if tmp is not None else None
    line = assert_user_error(run_cli("verify", str(path), env=env), *fragments)
    for call in (open_bundle, modelport.load, modelport.verify):
        with pytest.raises(BundleError) as info:
            call(path)
        for fragment in fragments:
            assert fragment.lower() in str(info.value).lower(), (fragment, str(info.value))
    return line


def test_bundle_missing(tmp_path):
    refused(tmp_path / "nope", "is not a bundle directory or .tar.gz archive")


def test_bundle_no_manifest(bundle):
    (bundle / "manifest.json").unlink()
    refused(bundle, "has no manifest.json", "not a (complete) bundle")


def test_bundle_manifest_not_json(bundle):
    (bundle / "manifest.json").write_text('{"schema_version": 1, "files": ')
    refused(bundle, "manifest.json is not valid JSON")


def test_bundle_file_modified(bundle):
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the weights
    (bundle / "model.onnx").write_bytes(bytes(data))
    refused(bundle, "file 'model.onnx' was modified (sha256 mismatch)", "re-copy the bundle")


def test_bundle_file_missing(bundle):
    (bundle / "samples.npz").unlink()
    refused(bundle, "file 'samples.npz' is missing")


def test_bundle_manifest_missing_field(bundle):
    rewrite_manifest(bundle, lambda m: m.pop("inputs"))
    refused(bundle, "missing or invalid field 'inputs'")


def test_bundle_schema_unknown(bundle):
    for value, says in ((0, "unknown schema_version 0"), ("1", "invalid 'schema_version'"),
                        (None, "invalid 'schema_version'")):
        rewrite_manifest(bundle, lambda m, v=value: m.update(schema_version=v))
        refused(bundle, says)


def test_bundle_schema_future(bundle):
    rewrite_manifest(bundle, lambda m: m.update(schema_version=3))  # this modelport writes 2
    refused(bundle, "schema_version 3 is newer than this modelport understands", "upgrade")


def test_bundle_path_traversal(bundle, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    digest = sha256_file(outside)
    rewrite_manifest(bundle, lambda m: m["files"].update({"../secret.txt": digest}))
    refused(bundle, "'../secret.txt' points outside the bundle")
    rewrite_manifest(bundle, lambda m: (m["files"].pop("../secret.txt"),
                                        m["artifact"].update(file="../model.onnx")))
    refused(bundle, "'../model.onnx' points outside the bundle")


def test_bundle_absolute_path(bundle):
    rewrite_manifest(bundle, lambda m: m["files"].update({"/etc/hostname": "0" * 64}))
    refused(bundle, "'/etc/hostname' points outside the bundle")


def test_bundle_symlink_out(bundle, tmp_path):
    # same bytes, so the checksum matches: only the link itself gives it away
    outside = tmp_path / "elsewhere.onnx"
    shutil.copyfile(bundle / "model.onnx", outside)
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").symlink_to(outside)
    refused(bundle, "'model.onnx' is a link", "refused")


def test_bundle_unlisted_samples(bundle):
    rewrite_manifest(bundle, lambda m: m["files"].pop("samples.npz"))
    refused(bundle, "'samples.npz' is not covered by a checksum")


class _Boom:
    """Unpickling this creates a marker file: proof of whether anything was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bundle_pickled_samples(bundle, tmp_path):
    marker = tmp_path / "PWNED"
    np.savez(bundle / "samples.npz", **{"in.ids": np.array([_Boom(marker)], dtype=object)})
    # an attacker who can write the bundle can also rewrite its checksums
    rewrite_manifest(bundle, lambda m: m["files"].update(
        {"samples.npz": sha256_file(bundle / "samples.npz")}))
    line = assert_user_error(run_cli("verify", str(bundle)), "cannot read samples.npz",
                             "allow_pickle=False")
    assert "Object arrays" in line
    with pytest.raises(BundleError, match="allow_pickle=False"):
        modelport.verify(bundle)
    assert not marker.exists(), "a pickle inside a bundle was executed"


def test_bundle_never_unpickles_in_source():
    """Static guard: no pickle, no allow_pickle=True, torch.load only with weights_only=True."""
    offenders = []
    for path in (ROOT / "src" / "modelport").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for line_no, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if ("import pickle" in code or "allow_pickle=True" in code or "pickle.load" in code
                    or ("torch.load(" in code and "weights_only=True" not in code)):
                offenders.append(f"{path.relative_to(ROOT)}:{line_no}: {line.strip()}")
    assert not offenders, offenders


# -- .tar.gz bundles ----------------------------------------------------------------------------
def test_bundle_tar_round_trip(bundle, tmp_path):
    proc = run_cli("pack", str(bundle))
    assert proc.returncode == 0, proc.stderr
    archive = bundle.with_name(bundle.name + ".tar.gz")
    assert archive.is_file() and f"packed {archive}" in proc.stdout
    tmp = tmp_path / "tmp"
    proc = run_cli("verify", str(archive), env=cli_env(tmp))
    assert proc.returncode == 0 and proc.stdout.startswith("OK onnxruntime:cpu:fp32"), proc.stderr
    assert not [p for p in tmp.iterdir() if p.name.startswith("modelport-bundle-")]
    with tarfile.open(archive) as tar:  # only the manifest and the files it lists
        names = sorted(tar.getnames())
    assert names == sorted(f"{bundle.name}/{n}" for n in
                           ["manifest.json", *manifest_of(bundle)["files"]])
    # packing is deterministic: the same bundle gives the same bytes
    again = pack_bundle(bundle, tmp_path / "again.tar.gz")
    assert again.read_bytes() == archive.read_bytes()
    feeds = {"ids": np.array([[1, 2, 3, 4]], dtype=np.int64)}
    with modelport.load(archive) as from_tar, modelport.load(bundle) as from_dir:
        np.testing.assert_array_equal(from_tar.infer(feeds)["embedding"],
                                      from_dir.infer(feeds)["embedding"])
    opened = open_bundle(archive)
    assert opened.archive == archive
    proc = run_cli("bench", str(archive), "--iters", "3", "--warmup", "1")
    assert proc.returncode == 0 and "onnxruntime:cpu:fp32" in proc.stdout, proc.stderr


def _bundle_tar(bundle: Path, path: Path, extra) -> Path:
    """A real bundle archive plus whatever ``extra(tar)`` adds."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name)
        extra(tar)
    return path


def _member(tar: tarfile.TarFile, name: str, *, kind=tarfile.REGTYPE, link: str = "",
            data: bytes = b"") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _tar_refused(archive: Path, tmp_path: Path, *fragments: str) -> None:
    tmp = tmp_path / "tmp"
    line = refused(archive, *fragments, tmp=tmp)
    assert str(archive) in line  # names the archive the user gave, not a temp copy
    leftovers = [p for p in tmp.rglob("*") if p.name != ".ses"]
    assert not leftovers, leftovers  # nothing extracted, nothing left


def test_bundle_tar_traversal(bundle, tmp_path):
    archive = _bundle_tar(bundle, tmp_path / "evil.tar.gz",
                          lambda t: _member(t, "../../escaped.txt", data=b"gotcha"))
    _tar_refused(archive, tmp_path, "'../../escaped.txt' points outside the bundle")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_bundle_tar_absolute(bundle, tmp_path):
    target = tmp_path / "abs-escaped.txt"
    archive = _bundle_tar(bundle, tmp_path / "evil.tar.gz",
                          lambda t: _member(t, str(target), data=b"gotcha"))
    _tar_refused(archive, tmp_path, "points outside the bundle")
    assert not target.exists()


def test_bundle_tar_symlink(bundle, tmp_path):
    archive = _bundle_tar(bundle, tmp_path / "evil.tar.gz", lambda t: _member(
        t, f"{bundle.name}/link", kind=tarfile.SYMTYPE, link="../../../../etc/passwd"))
    _tar_refused(archive, tmp_path, "is a link", "refused")


def test_bundle_tar_hardlink(bundle, tmp_path):
    archive = _bundle_tar(bundle, tmp_path / "evil.tar.gz", lambda t: _member(
        t, f"{bundle.name}/hard", kind=tarfile.LNKTYPE, link="etc/passwd"))
    _tar_refused(archive, tmp_path, "is a link", "refused")


def test_bundle_tar_device(bundle, tmp_path):
    archive = _bundle_tar(bundle, tmp_path / "evil.tar.gz",
                          lambda t: _member(t, f"{bundle.name}/fifo", kind=tarfile.FIFOTYPE))
    _tar_refused(archive, tmp_path, "is not a regular file", "refused")


def test_bundle_tar_corrupt(bundle, tmp_path):
    archive = pack_bundle(bundle, tmp_path / "good.tar.gz")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    _tar_refused(truncated, tmp_path, "is not a readable bundle archive", "modelport pack")
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    _tar_refused(garbage, tmp_path, "is not a readable bundle archive")


def test_bundle_tar_modified(bundle, tmp_path):
    data = bytearray((bundle / "model.onnx").read_bytes())
    manifest = (bundle / "manifest.json").read_bytes()
    data[-10] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    (bundle / "manifest.json").write_bytes(manifest)  # the manifest still has the old sha256
    archive = _bundle_tar(bundle, tmp_path / "modified.tar.gz", lambda t: None)
    _tar_refused(archive, tmp_path, "file 'model.onnx' was modified (sha256 mismatch)")


def test_fault_pack_exists(bundle, tmp_path):
    archive = pack_bundle(bundle, tmp_path / "b.tar.gz")
    before = archive.read_bytes()
    assert_user_error(run_cli("pack", str(bundle), "--out", str(archive)),
                      "exists already", "--force")
    with pytest.raises(BundleExists):
        pack_bundle(bundle, archive)
    assert archive.read_bytes() == before
    assert run_cli("pack", str(bundle), "--out", str(archive), "--force").returncode == 0
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_bundle_runtime_missing(tiny_bundle):
    proc = run_blocked(["onnxruntime"], "verify", str(tiny_bundle))
    assert_user_error(proc, "cannot run onnxruntime:cpu:fp32 here",
                      'pip install "modelport[onnxruntime]"')
    # the API, in a process where onnxruntime is not importable either
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import modelport\n"
            "try:\n    modelport.load(sys.argv[1])\n"
            "except modelport.ModelportError as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_bundle)], capture_output=True,
                         text=True, check=False, timeout=300).stdout
    assert out.startswith("TargetUnavailable") and "modelport[onnxruntime]" in out, out


def test_bundle_errors_are_modelport_errors():
    assert issubclass(BundleError, ModelportError) and BundleError.exit_code == 2
