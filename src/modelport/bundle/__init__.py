"""Deployment bundles: an artifact + manifest.json + README, written atomically, checked on load
(a directory, or the same packed into a .tar.gz by ``pack_bundle``)."""

from modelport._version import SCHEMA_VERSION
from modelport.bundle.pack import pack_bundle
from modelport.bundle.reader import Bundle, open_bundle
from modelport.bundle.writer import write_bundle

__all__ = ["SCHEMA_VERSION", "Bundle", "open_bundle", "pack_bundle", "write_bundle"]
