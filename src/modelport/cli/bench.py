"""`modelport bench`: a bundle (or a folder of them) timed here, or a MODEL built, checked and
timed on every target (the matrix). Heavy parts are imported when the command runs."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from modelport.cli.backend_flags import add_backend_flags
from modelport.cli.bench_serve import add_serve_load_args, cmd_serve_load
from modelport.cli.common import (
    add_bench_args,
    add_model_args,
    emit_report,
    model_from,
    parse_batches,
)
from modelport.cli.export import (
    add_budget_args,
    add_cnn_recipe_arg,
    add_cpu_features_arg,
    add_speedup_arg,
)
from modelport.cli.optimize_flags import add_optimize_args, search_from
from modelport.errors import UsageError

log = logging.getLogger("modelport")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark a bundle (or a directory of bundles) here; or "
                                     "build, check and time a MODEL on every target (--targets)")
    p.add_argument("bundle", metavar="BUNDLE_OR_MODEL")
    add_bench_args(p)
    add_bench_matrix_args(p)
    add_budget_args(p)
    add_model_args(p)
    add_backend_flags(p)
    add_serve_load_args(p)
    p.set_defaults(func=cmd_bench)


def add_bench_matrix_args(p: argparse.ArgumentParser) -> None:
    """Options of `modelport bench MODEL` (a bundle ignores the build-side ones)."""
    p.add_argument("--targets", default="all",
                   help="MODEL only: all | a device (cpu, cuda) | comma-separated targets; "
                        "for a language model, all / a device skip TFLite and TensorRT (no "
                        "KV-cache path there; listed with the reason)")
    p.add_argument("--calib", help="MODEL only: calibration data (see `export --help`)")
    p.add_argument("--eval", help="MODEL only: evaluation data for fidelity")
    p.add_argument("--report", type=Path, default=None,
                   help="write report.json, report.md and pareto.png here "
                        "(MODEL default: reports/<model>)")
    p.add_argument("--label", default=None, help="this machine's name in tables (default: host)")
    p.add_argument("--no-plot", action="store_true", help="skip pareto.png")
    add_speedup_arg(p)
    add_cpu_features_arg(p)
    add_cnn_recipe_arg(p)
    add_optimize_args(p)


def is_bundle_path(text: str) -> bool:
    from modelport.bundle.archive import is_archive

    path = Path(text)
    if (path / "manifest.json").is_file() or (path.is_file() and is_archive(path)):
        return True
    return path.is_dir() and any((c / "manifest.json").is_file() for c in path.iterdir())


def cmd_bench(args: argparse.Namespace) -> int:
    from modelport.bench.harness import BenchSettings

    if args.serve is not None:  # load on a running server, not the bundle here
        return cmd_serve_load(args)

    on_bundles = is_bundle_path(args.bundle)
    batches = parse_batches(args.batch) if args.batch else ((1,) if on_bundles else (1, 32))
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
        from modelport.backends.base import BuildOptions
        from modelport.cli.backend_flags import collect
        from modelport.cli.export import budget_from, cpu_features_from

        report = bench_model(model_from(args, args.bundle), args.targets, report_dir=report_dir,
                             calib=args.calib, eval=args.eval, settings=settings, label=args.label,
                             progress=progress, plot=not args.no_plot,
                             options=BuildOptions(threads=args.threads, backends=collect(args),
                                                  cpu_features=cpu_features_from(args),
                                                  cnn_recipe=args.cnn_recipe,
                                                  search=search_from(args)),
                             budget=budget_from(args), require_speedup=args.require_speedup)
    if on_bundles and report_dir is not None:
        from modelport.bench.report_doc import write_report

        write_report(report, report_dir, plot=not args.no_plot)
    emit_report(report, args.json)
    if report_dir is not None:
        log.info("wrote %s", ", ".join(str(Path(report_dir) / f) for f in
                                        ("report.json", "report.md") +
                                        (("pareto.png",) if report.get("plot") else ())))
    return 0


def _slug(model: str) -> str:
    name = Path(model.split(":", 1)[-1]).stem if ":" in model or "/" in model else model
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"
