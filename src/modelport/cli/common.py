"""Small helpers every command module shares: argument parsers, JSON output, logging setup."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from modelport.errors import UsageError

log = logging.getLogger("modelport")


def parse_batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--batch takes comma-separated integers like 1,8,32, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--batch takes positive integers like 1,8,32, got '{text}'")
    return values


#: seconds per unit of a duration like ``10m`` (``--max-time``)
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``10m``, ``90s``, ``1.5h`` or plain seconds (``45``) -> seconds (``--max-time``: the
    bound of every search, recipe or compression)."""
    raw = str(text).strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else "s"
    number = raw[:-1] if raw[-1:] in _DURATION_UNITS else raw
    try:
        value = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes a duration like 10m, 90s or 1h, got '{text}'") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"takes a positive duration like 10m or 90s, got '{text}'")
    return value


def parse_streams(text: str) -> int:
    if text.strip().lower() == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number of streams or 'auto', got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"takes 0 ('auto') or more streams, got {value}")
    return value


def write_rows(path: Path | None, rows: Any) -> None:
    if path is not None:
        from modelport.io import write_json_atomic

        write_json_atomic(path, rows)


def setup_logging(quiet: bool) -> None:
    if quiet:
        os.environ.setdefault("TQDM_DISABLE", "1")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    # third-party chatter (quantizer notes, exporter registry warnings) stays out of the way
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from modelport.terminal import strip_ansi

        msg = strip_ansi(record.getMessage())  # as for errors: no escape codes reach the user
        return f"warning: {msg}" if record.levelno >= logging.WARNING else msg


def add_bench_args(p: argparse.ArgumentParser) -> None:
    """Timing settings shared by `bench BUNDLE` and `bench MODEL`."""
    p.add_argument("--batch", default=None,
                   help="comma-separated batch sizes (default 1 for a bundle, 1,32 for a model)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--iters", type=int, default=None, help="timed iterations per batch size")
    mode.add_argument("--duration", type=float, default=None, help="seconds per batch size (3)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--streams", type=parse_streams, default=None, metavar="N",
                   help="BUNDLE: throughput mode, async requests on N streams (0 or 'auto': "
                        "the runtime's THROUGHPUT hint picks); default: latency mode")
    p.add_argument("--rotate", type=int, default=8, metavar="N",
                   help="distinct input batches cycled through (8; 1 reuses one input, "
                        "as benchmark_app does)")
    p.add_argument("--json", type=Path, nargs="?", const=Path("-"), default=None, metavar="PATH",
                   help="write the report JSON here (no PATH or '-': print it instead)")


def emit_report(report: dict[str, Any], json_out: Path | None) -> None:
    from modelport.bench.report_tables import text_table

    if json_out is not None and str(json_out) == "-":
        print(json.dumps(report, indent=2))
        return
    print(text_table(report))
    if json_out is not None:
        from modelport.io import write_json_atomic

        write_json_atomic(Path(json_out), report)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options of a MODEL that is a Hugging Face checkpoint folder."""
    from modelport.tasks import TASKS

    p.add_argument("--task", default=None, choices=TASKS,
                   help="Hugging Face folder: the task to export for (default: read from the "
                        "folder; see `modelport inspect DIR`)")
    p.add_argument("--detection-head", default=None, choices=("yolo",),
                   help="a file.py:factory detector with --task object-detection: the layout "
                        "of its output (yolo: [batch, 4 + classes, anchors], boxes decoded and "
                        "NMS run in the bundle)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="Hugging Face folder: allow a pytorch_model.bin pickle checkpoint "
                        "(unpickling runs code from the file)")


def model_from(args: argparse.Namespace, spec: str) -> Any:
    """The MODEL as given, or resolved now when --task / --trust-pickle must reach it."""
    head = getattr(args, "detection_head", None)
    if getattr(args, "task", None) is None and not getattr(args, "trust_pickle", False) \
            and head is None:
        return spec
    from modelport.models import resolve_model

    return resolve_model(spec, task=args.task, trust_pickle=args.trust_pickle,
                         detection_head=head)
