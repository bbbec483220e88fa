"""The one list of row statuses, read from report.schema.json so code and schema cannot drift.

Every command (export, bench, compare, report merge, sweep) labels a row with one of these; the
detail (why a target failed, which budget it missed) goes into the row's ``reason``.
"""

from __future__ import annotations

import json
from importlib import resources

REFERENCE = "reference"
OK = "ok"
BELOW_BUDGET = "below budget"
SLOWER_THAN_FP32 = "slower than fp32"
NOT_RUN_HERE = "built, not run here"
UNAVAILABLE = "unavailable"
FAILED = "failed"


def _schema_statuses() -> tuple[str, ...]:
    schema = json.loads(resources.files("modelport.bench").joinpath("report.schema.json")
                        .read_text(encoding="utf-8"))
    return tuple(schema["$defs"]["row"]["properties"]["status"]["enum"])


STATUSES: tuple[str, ...] = _schema_statuses()
_DECLARED = (REFERENCE, OK, BELOW_BUDGET, SLOWER_THAN_FP32, NOT_RUN_HERE, UNAVAILABLE, FAILED)
if set(_DECLARED) != set(STATUSES):  # a schema edit without a code edit (or the reverse)
    raise RuntimeError(f"bench/statuses.py and report.schema.json disagree: {_DECLARED} vs "
                       f"{STATUSES}")
