"""The transformers releases modelport's Hugging Face export is tested with.

The KV-cache export (``causal_lm.KVCacheLM``) builds transformers' ``DynamicCache`` and reads
``past_key_values.layers``, an API that moves between releases; the tests pass on the versions
pinned in constraints.txt. Another transformers still runs, with one warning at export that
names the tested range and the pin to install.
"""

from __future__ import annotations

import logging
from functools import lru_cache

log = logging.getLogger("modelport")

#: [low, high) of transformers versions the test suite passed with (constraints.txt pins 5.24.0)
TESTED_TRANSFORMERS = ("5.24", "5.25")


def in_tested_range(version: str, tested: tuple[str, str] = TESTED_TRANSFORMERS) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(version)
    except InvalidVersion:
        return False
    return Version(tested[0]) <= Version(v.base_version) < Version(tested[1])


@lru_cache(maxsize=1)
def warn_untested_transformers() -> bool:
    """One warning per process when the installed transformers is outside the tested range;
    True when it is inside."""
    import transformers

    version = str(getattr(transformers, "__version__", "unknown"))
    if in_tested_range(version):
        return True
    low, high = TESTED_TRANSFORMERS
    log.warning("transformers %s is outside the range modelport is tested with (>=%s, <%s): "
                "the export (the KV cache above all) may fail or differ; "
                "pip install \"transformers>=%s,<%s\" (constraints.txt pins the tested set)",
                version, low, high, low, high)
    return False
