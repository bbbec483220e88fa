"""Deployment bundles: an artifact + manifest.json + README, written atomically, checked on load
(a directory, or the same packed into a .tar.gz by ``pack_bundle``)."""

from modelport.bundle.archive import pack_bundle
from modelport.bundle.reader import Bundle, open_bundle
from modelport.bundle.writer import write_bundle

SCHEMA_VERSION = 1

__all__ = ["SCHEMA_VERSION", "Bundle", "open_bundle", "pack_bundle", "write_bundle"]
