"""``modelport pack``: a verified bundle directory -> one ``.tar.gz`` for copying."""

from __future__ import annotations

from pathlib import Path

from modelport.bundle.archive import is_archive, write_archive
from modelport.bundle.reader import open_bundle
from modelport.errors import BundleError


def pack_bundle(bundle: str | Path, out: str | Path | None = None, *, force: bool = False) -> Path:
    """Write ``BUNDLE.tar.gz`` from a bundle directory, after verifying its checksums.

    Only ``manifest.json`` and the files it lists go in, under one top-level folder named after
    the bundle; times and owners are zeroed so one bundle always packs to the same bytes.
    """
    opened = open_bundle(bundle)  # never pack a tampered or incomplete bundle
    if is_archive(opened.path):
        raise BundleError(f"'{bundle}' is packed already")
    root = opened.path
    out = Path(out) if out is not None else root.with_name(root.name + ".tar.gz")
    names = ["manifest.json", *sorted(opened.manifest["files"])]
    return write_archive(root, names, out, force=force)
