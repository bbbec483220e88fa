"""Write-to-temp-then-rename helpers: readers see nothing or something complete, never half."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.errors import BundleExists


def sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_dir(fill: Callable[[Path], None], out: Path, *, force: bool = False) -> Path:
    """Create ``out`` by filling a sibling temp dir and renaming it into place.

    Without ``force`` an existing ``out`` is refused; with it the old one is swapped out and
    removed only after the new one is in place. Any failure (or Ctrl-C) removes the temp dir.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not force:
        raise BundleExists(f"'{out}' exists already: pass --force to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old: Path | None = None
    try:
        fill(tmp)
        _fsync_dir(tmp)
        if out.exists() or out.is_symlink():
            if not force:
                raise BundleExists(f"'{out}' appeared while writing: pass --force to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "bundle")
        try:
            os.rename(tmp, out)
        except OSError:
            # another writer won the race: keep theirs, complete, and fail cleanly
            raise BundleExists(f"'{out}' was written by another process at the same time") from None
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.rename(old / "bundle", out)  # put the previous bundle back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
