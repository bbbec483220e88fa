"""Bundles as one ``.tar.gz`` file: packed from a verified bundle, opened with tarfile's ``data`` filter.

An archive is untrusted input. Before anything is extracted every member is checked: only
regular files and directories, relative names that stay inside, no links, no devices. The
extraction itself uses ``filter="data"`` (PEP 706) as a second line, and the extracted bundle
then goes through the same manifest and sha256 checks as a directory bundle.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from modelport.errors import BundleError, BundleExists
from modelport.io import output_error

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def write_archive(root: Path, names: list[str], out: Path, *, force: bool = False) -> Path:
    """Write ``names`` (relative to ``root``) into ``out`` as one deterministic .tar.gz, under
    one top-level folder named after ``root``; times and owners zeroed; written atomically."""
    if not is_archive(out):
        raise BundleError(f"'{out}': an archive name must end in .tar.gz or .tgz")
    if out.exists() and not force:
        raise BundleExists(f"'{out}' exists already: pass --force to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    except OSError as exc:
        raise output_error(exc, out) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                _add_file(tar, root / name, f"{root.name}/{name}")
            gz.flush()
            raw.flush()
            os.fsync(raw.fileno())
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # fails if another writer got there first: never clobber
            except FileExistsError:
                raise BundleExists(f"'{out}' appeared while writing: pass --force") from None
            tmp.unlink()
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise output_error(exc, out) from None
        raise
    return out


def _add_file(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = path.stat().st_size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as fh:
        tar.addfile(info, fh)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Check every member, extract with the ``data`` filter, return the bundle's root folder."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member)
            tar.extractall(dest, filter="data")
    except (tarfile.FilterError, tarfile.ReadError, tarfile.CompressionError, EOFError,
            zlib.error, gzip.BadGzipFile, io.UnsupportedOperation) as exc:
        raise BundleError(
            f"'{archive}' is not a readable bundle archive ({type(exc).__name__}: {exc}); "
            "re-create it with 'modelport pack'"
        ) from None
    if (dest / "manifest.json").is_file():
        return dest
    tops = [p for p in dest.iterdir() if p.is_dir() and (p / "manifest.json").is_file()]
    if len(tops) != 1:
        raise BundleError(
            f"'{archive}' has no manifest.json at its top or in one top-level folder: "
            "it is not a bundle archive"
        )
    return tops[0]


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or name.startswith("/"):
        raise BundleError(f"'{archive}': member '{name}' points outside the bundle; refused")
    if member.issym() or member.islnk():
        raise BundleError(
            f"'{archive}': member '{name}' is a link (to '{member.linkname}'); bundles hold only "
            "regular files, refused"
        )
    if not (member.isfile() or member.isdir()):
        raise BundleError(f"'{archive}': member '{name}' is not a regular file; refused")
