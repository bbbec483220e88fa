"""Finished builds on the driver's disk, keyed by content hash: a re-run skips them.

``DIR/<key>/outcome.json`` holds the rows; each bundle is its packed ``.tar.gz`` next to it.
An entry is published with ``publish_dir`` (temp dir + rename), so an interrupted sweep leaves
complete entries or none, and a blob whose sha256 no longer matches is a miss, not a bundle.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from modelport.sweep.outcomes import BuildOutcome, BundleBlob
from modelport.sweep.payload import Payload, sha256


class BuildCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def get(self, key: str) -> BuildOutcome | None:
        entry = self.root / key / "outcome.json"
        if not entry.is_file():
            return None
        try:
            meta = json.loads(entry.read_text(encoding="utf-8"))
            blobs = {}
            for target, info in meta["bundles"].items():
                data = (entry.parent / info["file_name"]).read_bytes()
                if sha256(data) != info["sha256"]:
                    return None
                blobs[target] = BundleBlob(target, info["file_name"], info["sha256"], data)
            ref = meta.get("reference_model")
            reference = None
            if ref is not None:
                data = (entry.parent / "reference_model.tar.gz").read_bytes()
                reference = Payload(ref["spec"], ref["name"], data, sha256(data))
        except (OSError, ValueError, KeyError):
            return None  # a damaged entry is rebuilt
        return BuildOutcome(key, meta["rows"], blobs, reference, meta.get("node_id"),
                            meta.get("cpu_kind"), None, meta.get("seconds"), cached=True)

    def put(self, outcome: BuildOutcome) -> Path | None:
        """Store a successful build (a failed one is retried next time)."""
        from modelport.io import publish_dir

        if outcome.error is not None:
            return None

        def fill(tmp: Path) -> None:
            for blob in outcome.bundles.values():
                (tmp / blob.file_name).write_bytes(blob.data)
            ref = outcome.reference_model
            if ref is not None and ref.data is not None:
                (tmp / "reference_model.tar.gz").write_bytes(ref.data)
            meta = {"rows": outcome.rows, "node_id": outcome.node_id,
                    "cpu_kind": outcome.cpu_kind, "seconds": outcome.seconds,
                    "bundles": {t: {k: v for k, v in asdict(b).items() if k != "data"}
                                for t, b in outcome.bundles.items()},
                    "reference_model": None if ref is None or ref.data is None
                    else {"spec": ref.spec, "name": ref.name}}
            (tmp / "outcome.json").write_text(json.dumps(meta, indent=2, default=str),
                                              encoding="utf-8")

        return publish_dir(fill, self.root / outcome.key, force=True)

    def archive_path(self, key: str, target: str) -> Path | None:
        """Where a cached bundle lies (for the report's ``bundle`` column)."""
        entry = self.root / key / "outcome.json"
        try:
            meta = json.loads(entry.read_text(encoding="utf-8"))
            return entry.parent / meta["bundles"][target]["file_name"]
        except (OSError, ValueError, KeyError):
            return None
