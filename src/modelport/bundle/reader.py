"""Open, check and load a bundle. Nothing is unpickled; every file's sha256 is verified."""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from modelport.bundle.archive import extract_archive, is_archive
from modelport.bundle.manifest_check import (
    check_graphs,
    check_optional_fields,
    check_tensor_specs,
)
from modelport.errors import BundleError, ModelportError
from modelport.io import output_error, sha256_file
from modelport.specs import Target, TensorSpec

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    #: the .tar.gz it was opened from; its extracted copy lives as long as this object
    archive: Path | None = None
    _tmp: Any = field(default=None, repr=False, compare=False)

    @property
    def target(self) -> Target:
        return Target.parse(self.manifest["target"])

    @cached_property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["inputs"]]

    @cached_property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["outputs"]]

    @property
    def artifact_path(self) -> Path:
        return self.path / self.manifest["artifact"]["file"]

    def samples(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(input feeds, reference outputs) stored at build time; ({}, {}) if none."""
        name = self.manifest.get("samples")
        if not name:
            return {}, {}
        try:
            with np.load(self.path / _inside(self.path, name), allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{self.path}: cannot read {name}: {exc}") from None
        feeds = {k[3:]: v for k, v in data.items() if k.startswith("in.")}
        refs = {k[4:]: v for k, v in data.items() if k.startswith("ref.")}
        return feeds, refs

    def tokenizer(self):
        pre = self.manifest.get("preprocessing") or {}
        if not pre.get("tokenizer"):
            return None
        from modelport.calibration_data.text import TextTokenizer

        return TextTokenizer(self.path / _inside(self.path, pre["tokenizer"]),
                             max_length=int(pre.get("max_length", 128)))

    def session(self, *, threads: int | None = None, **options: Any):
        from modelport import registry

        target = self.target
        backend = registry.get_backend(target.runtime)()
        # running needs only the runtime (a TFLite device has the interpreter, not the converter)
        avail = backend.runnable(target)
        if not avail.ok:
            from modelport.errors import TargetUnavailable

            raise TargetUnavailable(f"cannot run {target} here: {avail.reason}")
        from modelport.backends.cpu_recipes import check_host

        check_host(self.manifest)  # a recipe chosen for a VNNI CPU may be slow on this one
        if self.manifest.get("graphs"):  # an encoder and a decoder: one session over both
            from modelport.backends.seq2seq_session import seq2seq_session

            session = seq2seq_session(self, threads=threads, **options)
            session.bundle = self
            return session
        session = backend.load(
            self.artifact_path, target=target, inputs=self.inputs, outputs=self.outputs,
            threads=threads, bundle=self, **options,
        )
        pre = self.manifest.get("preprocessing") or {}
        if pre.get("task") == "text-generation":  # generate() over the KV-cache graph
            from modelport.backends.lm_session import lm_session

            session = lm_session(session, pre)
        session.bundle = self
        return session


def open_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read manifest.json, check its schema and (by default) every file's checksum.

    ``path`` is a bundle directory or a ``.tar.gz`` made by ``modelport pack`` (extracted to a
    temp dir with tarfile's ``data`` filter after every member is checked).
    """
    path = Path(path)
    if path.is_file() and is_archive(path):
        return _open_archive(path, verify=verify)
    if not path.is_dir():
        raise BundleError(f"'{path}' is not a bundle directory or .tar.gz archive")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"'{path}' has no manifest.json: it is not a (complete) bundle")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    check_manifest(manifest, path)
    if verify:
        verify_files(path, manifest)
    return Bundle(path, manifest)


def _open_archive(archive: Path, *, verify: bool) -> Bundle:
    tmp = tempfile.TemporaryDirectory(prefix="modelport-bundle-")
    try:
        root = extract_archive(archive, Path(tmp.name))
        try:
            bundle = open_bundle(root, verify=verify)
        except BundleError as exc:  # name the archive the user gave, not the temp copy
            raise BundleError(str(exc).replace(str(root), str(archive))) from None
    except OSError as exc:
        tmp.cleanup()
        raise output_error(exc, Path(tmp.name)) from None
    except BaseException:
        tmp.cleanup()
        raise
    bundle.archive, bundle._tmp = archive, tmp
    return bundle


def check_manifest(manifest: Any, path: Path) -> None:
    """Structural checks of the fields the reader relies on (the JSON Schema documents them all)."""
    from modelport._version import SCHEMA_VERSION

    where = f"{path}/manifest.json"
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: expected a JSON object")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where}: missing or invalid 'schema_version'")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{where}: schema_version {version} is newer than this modelport understands "
            f"({SCHEMA_VERSION}): upgrade modelport"
        )
    if version < 1:
        raise BundleError(f"{where}: unknown schema_version {version}")
    required = {"target": str, "runtime": dict, "artifact": dict, "files": dict,
                "inputs": list, "outputs": list, "model": dict}
    for key, kind in required.items():
        if not isinstance(manifest.get(key), kind):
            raise BundleError(f"{where}: missing or invalid field '{key}'")
    try:
        Target.parse(manifest["target"])
    except ModelportError as exc:
        raise BundleError(f"{where}: {exc}") from None
    if not isinstance(manifest["artifact"].get("file"), str):
        raise BundleError(f"{where}: missing field 'artifact.file'")
    for rel, digest in manifest["files"].items():
        _inside(path, rel)
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise BundleError(f"{where}: invalid sha256 for '{rel}'")
    _inside(path, manifest["artifact"]["file"])
    if manifest["artifact"]["file"] not in manifest["files"]:
        raise BundleError(f"{where}: artifact '{manifest['artifact']['file']}' is not listed in files")
    check_tensor_specs(manifest, where)
    check_optional_fields(manifest, where)
    check_graphs(manifest, where, lambda rel: _inside(path, rel))
    if manifest.get("samples") is not None:
        _inside(path, manifest["samples"])
    if (manifest.get("preprocessing") or {}).get("tokenizer"):
        _inside(path, manifest["preprocessing"]["tokenizer"])


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists, is a regular file inside the bundle, and matches its sha256."""
    root = path.resolve()
    for rel, digest in manifest["files"].items():
        file = path / _inside(path, rel)
        if file.is_symlink() or (file.exists() and root not in file.resolve().parents):
            raise BundleError(
                f"{path}: '{rel}' is a link (or under one) leading out of the bundle; bundles "
                "hold only regular files: refused"
            )
        if not file.is_file():
            raise BundleError(f"{path}: file '{rel}' is missing (the bundle is incomplete)")
        if sha256_file(file) != digest:
            raise BundleError(
                f"{path}: file '{rel}' was modified (sha256 mismatch); rebuild or re-copy the bundle"
            )
    for key in ("samples",):
        rel = manifest.get(key)
        if rel and rel not in manifest["files"]:
            raise BundleError(f"{path}: '{rel}' is not covered by a checksum")
    pre = manifest.get("preprocessing") or {}
    if pre.get("tokenizer") and pre["tokenizer"] not in manifest["files"]:
        raise BundleError(f"{path}: tokenizer '{pre['tokenizer']}' is not covered by a checksum")


def _inside(root: Path, rel: Any) -> str:
    """A manifest path must be relative and stay inside the bundle."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{root}: invalid file entry {rel!r} in manifest")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        raise BundleError(f"{root}: manifest entry '{rel}' points outside the bundle")
    return rel
