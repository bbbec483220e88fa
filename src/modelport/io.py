"""Write-to-temp-then-rename helpers: readers see nothing or something complete, never half."""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.errors import BundleExists, OutputError


def cache_root() -> Path:
    """modelport's cache folder: ``$MODELPORT_CACHE``, else ``~/.cache/modelport`` (trained
    built-in weights, ONNX exports, TensorRT engines of read-only bundles)."""
    return Path(os.environ.get("MODELPORT_CACHE") or Path.home() / ".cache" / "modelport")


def sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
            raise output_error(exc, path) from None
        raise


def publish_dir(fill: Callable[[Path], None], out: Path, *, force: bool = False) -> Path:
    """Create ``out`` by filling a sibling temp dir and renaming it into place.

    Without ``force`` an existing ``out`` is refused (also when another process publishes it
    first: the rename never replaces). With ``force`` the old one is swapped for the new one in
    one atomic exchange where the OS has it (Linux renameat2), so readers see the old bundle or
    the new one, never none. Any failure (or Ctrl-C) removes the temp dir; a full disk or a
    read-only target is an OutputError, not a traceback.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists() and not force:
            raise BundleExists(f"'{out}' exists already: pass --force to replace it")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise output_error(exc, out) from None
    old: Path | None = None
    try:
        fill(tmp)
        _fsync_dir(tmp)
        if out.exists() or out.is_symlink():
            if not force:
                raise BundleExists(f"'{out}' appeared while writing: pass --force to replace it")
            if _rename2(tmp, out, _RENAME_EXCHANGE):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous bundle
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.rename(out, old / "bundle")
                os.rename(tmp, out)
        elif not _rename2(tmp, out, _RENAME_NOREPLACE):
            try:
                os.rename(tmp, out)
            except OSError as exc:
                if not out.exists():
                    raise
                raise BundleExists(
                    f"'{out}' was written by another process at the same time"
                ) from exc
        _fsync_dir(out.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.rename(old / "bundle", out)  # put the previous bundle back
        if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
            raise output_error(exc, out) from None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


#: write failures that are the environment's (full disk, quota, read-only, permissions)
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                  errno.EPERM, errno.EIO}


def output_error(exc: OSError, out: Path) -> Exception:
    """One line for a write that failed because of the machine, not the model."""
    if exc.errno not in _OUTPUT_ERRNOS:
        return exc  # not the environment's: re-raised as it is
    what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EFBIG: "a file exceeds the allowed file size"}.get(
        exc.errno, exc.strerror or str(exc))
    return OutputError(
        f"cannot write '{out}': {what}; nothing was left behind: free space or choose another "
        "--out"
    )


# renameat2(2) flags; the exchange makes --force a single atomic step on Linux
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2 via libc; False where the OS or file system does not have it (then rename)."""
    func = _renameat2()
    if func is None:
        return False
    if func(-100, os.fsencode(src), -100, os.fsencode(dst), flags) == 0:  # -100: AT_FDCWD
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    if err == errno.EEXIST and flags == _RENAME_NOREPLACE:
        raise BundleExists(f"'{dst}' was written by another process at the same time")
    raise OSError(err, os.strerror(err), str(dst))


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
