"""`modelport sweep`: many models x recipes x targets x devices (here, or on a Ray cluster),
and `modelport device join`, a thin wrapper around `ray start` for a device node."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
from pathlib import Path

from modelport.cli.common import add_bench_args, emit_report, parse_batches
from modelport.cli.optimize_flags import add_optimize_args, search_from
from modelport.errors import MissingDependency, UsageError

log = logging.getLogger("modelport")

#: --optimize in a sweep: built on the build node, timed on one device of each CPU kind
SWEEP_SEARCH_HELP = {
    "--optimize": "build each target's candidate recipes on the build node and check them "
                  "against the accuracy budget there, time them on one device of each CPU kind "
                  "(interleaved rounds, then the winner's runtime settings) and ship that "
                  "kind's winner to its devices: latency = p50 at batch 1, throughput = "
                  "samples/s at batch 32; the table and each bundle's manifest record every "
                  "candidate and the choice, the runtime settings are re-applied at load",
    "--max-time": "per target, bound of the candidate builds on the build node and, "
                  "separately, of their timing on the device, e.g. 10m, 90s",
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="build every MODEL x recipe once per CPU kind and benchmark every "
                      "bundle on every device (--ray: devices are Ray nodes)",
        description="Without --ray everything runs on this machine. With --ray ADDRESS each "
                    "device is a Ray node started with --resources='{\"device:NAME\": 1}'.")
    p.add_argument("models", metavar="MODEL", nargs="+",
                   help="builtin:NAME | file.py:factory | model.pt2 | model.onnx | a folder")
    p.add_argument("--targets", required=True,
                   help="comma-separated targets, e.g. onnxruntime:cpu:int8,openvino:cpu:fp32")
    p.add_argument("--recipe", action="append", default=[], metavar="R",
                   help="a compression recipe (built-in name or YAML), repeatable; "
                        "default: the model as given")
    p.add_argument("--calib", help="calibration data (see `export --help`)")
    p.add_argument("--eval", help="evaluation data for the build-side fidelity check")
    p.add_argument("--devices", default=None, metavar="NAME[,NAME...]",
                   help="the devices to benchmark on (needs --ray)")
    p.add_argument("--ray", default=None, metavar="ADDRESS", dest="ray_address",
                   help="a Ray cluster's address, HEAD:PORT (refused in seconds when "
                        "nothing answers there)")
    p.add_argument("--report", type=Path, required=True,
                   help="write report.json, report.md and pareto.png here")
    p.add_argument("--cache", type=Path, default=None,
                   help="finished builds, by content hash (default REPORT/builds): "
                        "a re-run skips builds whose inputs are unchanged")
    p.add_argument("--events", type=Path, default=None, metavar="FILE",
                   help="append one JSON line per finished task (for scripts)")
    p.add_argument("--label", default=None, help="without --ray: this machine's name")
    p.add_argument("--no-plot", action="store_true", help="skip pareto.png")
    p.add_argument("--output-kind", default=None, metavar="KIND",
                   help="what the models' outputs are: logits (judged by decisions), embedding "
                        "or regression (judged by cosine); default: each model's declaration, "
                        "else guessed (see `export --help`)")
    add_bench_args(p)
    add_optimize_args(p, helps=SWEEP_SEARCH_HELP)
    p.set_defaults(func=cmd_sweep)

    d = sub.add_parser("device", help="join a Ray cluster as a device for `modelport sweep`")
    dsub = d.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    j = dsub.add_parser("join", help="`ray start --address=HEAD:PORT --resources="
                                     "'{\"device:NAME\": 1}'` on this machine")
    j.add_argument("--address", required=True, metavar="HEAD:PORT")
    j.add_argument("--name", required=True, help="the device name `sweep --devices` uses")
    j.add_argument("--build", action="store_true",
                   help="also offer `modelport-build` (builds may run here: needs torch)")
    j.add_argument("--block", action="store_true", help="stay in the foreground")
    j.set_defaults(func=cmd_device_join)


def cmd_sweep(args: argparse.Namespace) -> int:
    from modelport.bench.harness import BenchSettings
    from modelport.sweep.run import sweep

    # `bench BUNDLE`'s defaults: batch 1, 3 s per batch size
    settings = BenchSettings(
        batch_sizes=parse_batches(args.batch) if args.batch else (1,), warmup=args.warmup,
        iters=args.iters, duration=None if args.iters else (args.duration or 3.0),
        threads=args.threads, rotate=args.rotate, streams=args.streams)
    devices = [d.strip() for d in (args.devices or "").split(",") if d.strip()]
    report = sweep(args.models, [t.strip() for t in args.targets.split(",") if t.strip()],
                   report_dir=args.report, settings=dict(settings.__dict__),
                   recipes=args.recipe, calib=args.calib, eval=args.eval, devices=devices,
                   ray_address=args.ray_address, cache_dir=args.cache, events=args.events,
                   label=args.label, quiet=args.quiet, plot=not args.no_plot,
                   output_kind=args.output_kind, search=search_from(args))
    emit_report(report, args.json)
    if args.json is None or str(args.json) != "-":
        from modelport.sweep.search_report import search_text

        text = search_text(report)  # --optimize: which candidate won on each device
        if text:
            print(text.lstrip("\n"))
    log.info("wrote %s", args.report / "report.json")
    return 0


def cmd_device_join(args: argparse.Namespace) -> int:
    ray = shutil.which("ray")
    if ray is None:
        raise MissingDependency('joining a cluster needs Ray: pip install "modelport[ray]"')
    if not args.name or any(c in args.name for c in ",: "):
        raise UsageError(f"--name '{args.name}': a device name has no commas, colons or spaces")
    resources = {f"device:{args.name}": 1}
    if args.build:
        resources["modelport-build"] = 1
    argv = [ray, "start", f"--address={args.address}", f"--resources={json.dumps(resources)}"]
    if args.block:
        argv.append("--block")
    print(" ".join(argv[:3] + [f"--resources='{json.dumps(resources)}'"] + argv[4:]))
    return subprocess.run(argv, check=False).returncode
