"""Files a build needs (model, recipe, data), packed as bytes that travel through Ray's store.

No shared disk is assumed: a path the user gave on the driver becomes a deterministic tar.gz
(sorted names, zeroed times and owners), so its sha256 is a content hash that keys the build
cache, and the build node unpacks it into a temp dir of its own.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from modelport.errors import UsageError


@dataclass(frozen=True)
class Payload:
    """A source as the user named it, plus its files (None for ``builtin:`` and the like)."""

    spec: str
    name: str | None = None  # the file or folder name inside ``data``
    data: bytes | None = None
    digest: str = ""

    def materialize(self, into: Path) -> str:
        """Unpack next to nothing else and return the spec that names the local copy."""
        if self.data is None:
            return self.spec
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(self.data), mode="r:gz") as tar:
            tar.extractall(into, filter="data")
        local = str(into / self.name)
        head, sep, factory = self.spec.rpartition(":")
        return f"{local}:{factory}" if sep and head.endswith(".py") else local


def file_payload(spec: str, path: Path) -> Payload:
    """Pack ``path`` (a file or a folder) for the source ``spec``."""
    if not path.exists():
        raise UsageError(f"'{path}' not found")
    data = pack_path(path)
    return Payload(spec=spec, name=path.name, data=data, digest=sha256(data))


def text_payload(spec: str, content: str | None = None) -> Payload:
    """A source that is only a name (``builtin:NAME``, a built-in recipe): hashed by its text."""
    return Payload(spec=spec, digest=sha256((content or spec).encode()))


def model_payload(spec: str) -> Payload:
    """MODEL as ``export`` takes it: ``builtin:NAME`` travels as text, files as bytes."""
    if spec.startswith("builtin:"):
        return text_payload(spec)
    head, sep, _ = spec.rpartition(":")
    if sep and head.endswith(".py"):
        return file_payload(spec, Path(head))
    return file_payload(spec, Path(spec))


def pack_path(path: Path) -> bytes:
    """One file or a whole folder as tar.gz bytes that depend on the contents alone."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in files:
            name = path.name if file == path else f"{path.name}/{file.relative_to(path).as_posix()}"
            info = tarfile.TarInfo(name)
            info.size = file.stat().st_size
            info.mode = 0o644
            with open(file, "rb") as fh:
                tar.addfile(info, fh)
    return raw.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
