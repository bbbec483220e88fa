"""CLI wiring for `bench` (model matrix or bundles), `compare` and `report merge`.

Kept out of cli.py so that file only declares the commands; everything here imports its
heavy parts when a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from modelport.errors import UsageError

log = logging.getLogger("modelport")


# -- bench ------------------------------------------------------------------------------------
def add_bench_matrix_args(p: argparse.ArgumentParser) -> None:
    """Options of `modelport bench MODEL` (a bundle ignores the build-side ones)."""
    p.add_argument("--targets", default="all",
                   help="MODEL only: all | a device (cpu, cuda) | comma-separated targets")
    p.add_argument("--calib", help="MODEL only: calibration data (see `export --help`)")
    p.add_argument("--eval", help="MODEL only: evaluation data for fidelity")
    p.add_argument("--report", type=Path, default=None,
                   help="write report.json, report.md and pareto.png here "
                        "(MODEL default: reports/<model>)")
    p.add_argument("--label", default=None, help="this machine's name in tables (default: host)")
    p.add_argument("--no-plot", action="store_true", help="skip pareto.png")


def is_bundle_path(text: str) -> bool:
    from modelport.bundle.archive import is_archive

    path = Path(text)
    if (path / "manifest.json").is_file() or (path.is_file() and is_archive(path)):
        return True
    return path.is_dir() and any((c / "manifest.json").is_file() for c in path.iterdir())


def cmd_bench(args: argparse.Namespace) -> int:
    from modelport.bench.harness import BenchSettings
    from modelport.cli import _parse_batches

    on_bundles = is_bundle_path(args.bundle)
    batches = _parse_batches(args.batch) if args.batch else ((1,) if on_bundles else (1, 32))
    default_duration = 3.0 if on_bundles else 2.0
    if args.streams is not None and not on_bundles:
        raise UsageError("--streams times a bundle's async requests: export first, then "
                         "'modelport bench BUNDLE --streams N'")
    settings = BenchSettings(batch_sizes=batches, warmup=args.warmup, iters=args.iters,
                             duration=None if args.iters else (args.duration or default_duration),
                             threads=args.threads, rotate=args.rotate, streams=args.streams)
    progress = not args.quiet  # bars go to stderr: stdout stays clean for --json -
    if on_bundles:
        from modelport.bench.device import bench_bundles

        report = bench_bundles([args.bundle], settings, label=args.label, progress=progress)
        report_dir = args.report
    else:
        from modelport.bench.matrix import bench_model

        report_dir = args.report or Path("reports") / _slug(args.bundle)
        report = bench_model(args.bundle, args.targets, report_dir=report_dir, calib=args.calib,
                             eval=args.eval, settings=settings, label=args.label,
                             progress=progress, plot=not args.no_plot)
    if on_bundles and report_dir is not None:
        from modelport.bench.report_doc import write_report

        write_report(report, report_dir, plot=not args.no_plot)
    _emit(report, args.json)
    if report_dir is not None:
        log.info("wrote %s", ", ".join(str(Path(report_dir) / f) for f in
                                        ("report.json", "report.md") +
                                        (("pareto.png",) if report.get("plot") else ())))
    return 0


def _emit(report: dict[str, Any], json_out: Path | None) -> None:
    from modelport.bench.report_tables import text_table

    if json_out is not None and str(json_out) == "-":
        print(json.dumps(report, indent=2))
        return
    print(text_table(report))
    if json_out is not None:
        from modelport.bundle.atomic import write_json_atomic

        write_json_atomic(Path(json_out), report)


def _slug(model: str) -> str:
    name = Path(model.split(":", 1)[-1]).stem if ":" in model or "/" in model else model
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"


# -- compare ----------------------------------------------------------------------------------
def add_compare_parser(sub) -> None:
    from modelport.compare.outputs import ATOL, RTOL

    p = sub.add_parser("compare", help="run the same inputs through several artifacts and "
                                       "compare every output with the first")
    p.add_argument("items", nargs="+", metavar="BUNDLE_OR_ONNX",
                   help="bundle directories or .onnx files; the first is the reference "
                        "(one bundle alone: vs its stored reference outputs)")
    p.add_argument("--eval", help="inputs: folder of .npz feeds or a text file "
                                  "(default: the first bundle's stored samples)")
    p.add_argument("--rtol", type=float, default=RTOL, help=f"relative tolerance ({RTOL:g})")
    p.add_argument("--atol", type=float, default=ATOL, help=f"absolute tolerance ({ATOL:g})")
    p.add_argument("--per-layer", action="store_true",
                   help="two ONNX-derived artifacts: find the node where the error jumps")
    p.add_argument("--layer-threshold", type=float, default=None,
                   help="per-layer: relative L2 error that counts as a departure (1e-3)")
    p.add_argument("--samples", type=int, default=None, help="use at most N input rows")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="print the result as JSON (or write it to PATH)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from modelport.compare import compare, text_report

    if args.samples is not None and args.samples < 1:
        raise UsageError("--samples must be at least 1")
    report = compare(args.items, eval=args.eval, rtol=args.rtol, atol=args.atol,
                     threads=args.threads, per_layer=args.per_layer,
                     layer_threshold=args.layer_threshold, max_samples=args.samples)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(text_report(report))
        if args.json:
            from modelport.bundle.atomic import write_json_atomic

            write_json_atomic(Path(args.json), report)
    if not report["passed"]:
        failed = [c["label"] for c in report["comparisons"] if not c["passed"]]
        print(f"error: {', '.join(failed)} differ(s) from {report['reference']} beyond "
              f"rtol {args.rtol:g} / atol {args.atol:g}", file=sys.stderr)
        return 1
    return 0


# -- report merge -----------------------------------------------------------------------------
def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="work with bench reports (merge several machines')")
    rsub = p.add_subparsers(dest="report_command", metavar="ACTION", required=True)
    m = rsub.add_parser("merge", help="fold several report.json files into one multi-device table")
    m.add_argument("reports", nargs="+", metavar="JSON", help="report.json files (or their dirs)")
    m.add_argument("--out", type=Path, required=True, help="directory for the merged report")
    m.add_argument("--no-plot", action="store_true", help="skip pareto.png")
    m.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="print the merged report as JSON (or write it to PATH)")
    m.set_defaults(func=cmd_report_merge)


def cmd_report_merge(args: argparse.Namespace) -> int:
    from modelport.bench.report_doc import load_report, merge_reports, write_report

    merged = merge_reports([load_report(p) for p in args.reports])
    write_report(merged, args.out, plot=not args.no_plot)
    _emit(merged, Path(args.json) if args.json else None)
    return 0
