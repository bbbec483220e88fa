"""``--optimize latency|throughput`` and ``--max-time``: the recipe search's flags, shared by
`export`, `bench MODEL` and `sweep`."""

from __future__ import annotations

import argparse
from typing import Any

from modelport.cli.common import parse_duration
from modelport.errors import UsageError


def add_optimize_args(p: argparse.ArgumentParser, *, helps: dict[str, str] | None = None
                      ) -> None:
    """``helps``: flag -> help text where a command searches differently (sweep)."""
    from modelport.optimize.settings import DEFAULT_MAX_TIME, OBJECTIVES

    helps = helps or {}
    p.add_argument("--optimize", default=None, choices=OBJECTIVES,
                   help=helps.get("--optimize") or
                   "measure candidate recipes for each target on this machine (INT8 forms, "
                   "the peers' plain recipes, threads, OpenVINO streams and hints, ONNX "
                   "Runtime graph level and fusions) and ship the fastest within the "
                   "accuracy budget: latency = p50 at batch 1, throughput = samples/s at "
                   "batch 32; every candidate's figures go to the manifest and the table, "
                   "the chosen runtime settings are re-applied at load")
    p.add_argument("--max-time", type=parse_duration, default=None, metavar="DURATION",
                   help=(helps.get("--max-time") or
                         "bound of a search per target, e.g. 10m, 90s, 1h: no new candidate "
                         "starts after it and the best so far ships") +
                   f" (default {DEFAULT_MAX_TIME / 60:.0f}m)")
    p.add_argument("--no-search-cache", action="store_true",
                   help="--optimize: search again even when this model was searched on this "
                        "kind of CPU before ($MODELPORT_SEARCH_CACHE, else "
                        "~/.cache/modelport/search)")


def search_from(args: argparse.Namespace) -> Any:
    """The SearchSettings the flags ask for; None without --optimize."""
    objective = getattr(args, "optimize", None)
    max_time = getattr(args, "max_time", None)
    if objective is None:
        if max_time is not None:
            raise UsageError("--max-time bounds a search: give --optimize latency|throughput")
        return None
    from modelport.optimize.settings import DEFAULT_MAX_TIME, SearchSettings

    return SearchSettings(objective=objective,
                          max_time=max_time if max_time is not None else DEFAULT_MAX_TIME,
                          cache=not getattr(args, "no_search_cache", False))
