"""`modelport ...`: every command has a Python twin (modelport.export/load/benchmark/verify).

User mistakes print one line (``error: ...``) and exit 2; internal failures exit 1; Ctrl-C or
SIGTERM exit 130/143 after cleanup (temp dirs are removed by the code being interrupted).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from modelport.errors import ModelportError, UsageError

log = logging.getLogger("modelport")

DEMO_MODEL = "builtin:minilm"
DEMO_OUT = "bundles/minilm"
#: the demo runs every one of these that is installed here
DEMO_TARGETS = (
    "onnxruntime:cpu:fp32", "onnxruntime:cpu:int8",
    "openvino:cpu:fp32", "openvino:cpu:int8",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelport",
        description="Take a trained PyTorch model to a deployable, measured artifact.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("export", help="export a model to one or more targets and write bundles")
    p.add_argument("model", metavar="MODEL",
                   help="builtin:NAME | path/to/file.py:factory | model.pt2 | model.onnx")
    _export_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="run the embedded default export (prints the command it runs)")
    p.add_argument("--out", default=DEMO_OUT, help=f"output directory (default {DEMO_OUT})")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmark a bundle (or a directory of bundles) here; or "
                                     "build, check and time a MODEL on every target (--targets)")
    p.add_argument("bundle", metavar="BUNDLE_OR_MODEL")
    _bench_args(p)
    from modelport.bench.commands import (
        add_bench_matrix_args,
        add_compare_parser,
        add_report_parser,
    )

    add_bench_matrix_args(p)
    p.set_defaults(func=cmd_bench)
    add_compare_parser(sub)
    add_report_parser(sub)

    p = sub.add_parser("verify", help="check a bundle's checksums and re-run its stored samples")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("pack", help="pack a verified bundle into one .tar.gz for copying")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--out", type=Path, default=None, help="archive path (default BUNDLE.tar.gz)")
    p.add_argument("--force", action="store_true", help="replace an existing archive")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("run", help="run a bundle on text or an .npz feed and print the outputs")
    p.add_argument("bundle", metavar="BUNDLE")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a sentence (repeatable) for text models")
    src.add_argument("--input", type=Path, help=".npz file: input name -> array")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write outputs as JSON here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("build", help="build a bundle's device artifact here, ahead of first load "
                                     "(TensorRT: the engine for this GPU, cached in the bundle)")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if a matching engine exists")
    p.set_defaults(func=cmd_build)

    from modelport.optimizers.cli import add_compress_parser

    add_compress_parser(sub)

    p = sub.add_parser("targets", help="list every target, whether it works here, and why not")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_targets)
    return parser


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--target", action="append", required=True, dest="targets",
                   metavar="TARGET", help="runtime:device:precision (repeatable); see `targets`")
    p.add_argument("--calib", help="calibration data: folder of .npy/.npz feeds, or a text file")
    p.add_argument("--eval", help="evaluation data (default: held out from --calib / built-in)")
    p.add_argument("--out", default="bundles", help="output directory (one bundle per target)")
    p.add_argument("--force", action="store_true", help="replace existing bundles (atomically)")
    p.add_argument("--allow-accuracy-drop", action="store_true",
                   help="keep a target that misses its accuracy budget (recorded in the bundle)")
    p.add_argument("--min-cosine", type=float, default=None, help="budget: mean cosine (0.99)")
    p.add_argument("--max-accuracy-drop", type=float, default=None,
                   help="budget for classifiers, in points (1.0)")
    p.add_argument("--int8-mode", choices=["static", "dynamic"], default=None,
                   help="ONNX Runtime INT8 flavour (default: measured per model kind)")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default=None)
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: all)")
    p.add_argument("--no-bench", action="store_true", help="skip benchmarking")
    p.add_argument("--simplify", action="store_true", help="simplify the ONNX with onnxslim")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: exporter's)")
    p.add_argument("--json", type=Path, default=None, help="write the results rows as JSON here")
    p.add_argument("--trt-profile", default=None, metavar="AXIS=MIN:OPT:MAX,...",
                   help="TensorRT optimization profile per dynamic axis "
                        "(default batch=1:8:64,seq=1:128:256)")
    p.add_argument("--trt-workspace", type=int, default=None, metavar="MIB",
                   help="TensorRT builder workspace in MiB (4096)")
    p.add_argument("--torch-compile", action="store_true",
                   help="torch:cuda:* rows run torch.compile'd instead of eager")
    p.add_argument("--accuracy-control", action="store_true",
                   help="OpenVINO INT8: when INT8 misses the budget, keep the most sensitive "
                        "layers in float until it fits (NNCF accuracy control)")
    p.add_argument("--max-drop", type=float, default=None, metavar="X",
                   help="accuracy control: allowed drop, a fraction (accuracy for labelled "
                        "classifiers, mean cosine otherwise; default: from the budget)")
    p.add_argument("--shape", action="append", default=None, metavar="NAME=DIMS",
                   help="static shape for TFLite (repeatable), e.g. input_ids=1x128 "
                        "(default: batch 1, text seq 128)")
    p.add_argument("--io", choices=["float", "int8"], default=None,
                   help="TFLite INT8 input/output type (default float; int8 for "
                        "microcontrollers: scales/zero points go in the bundle)")
    p.add_argument("--tflite-float-ops", default=None, metavar="OP,OP",
                   help="TFLite INT8: keep these op types in float, e.g. SOFTMAX,MEAN")


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", default=None,
                   help="comma-separated batch sizes (default 1 for a bundle, 1,32 for a model)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--iters", type=int, default=None, help="timed iterations per batch size")
    mode.add_argument("--duration", type=float, default=None, help="seconds per batch size (3)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--streams", type=_parse_streams, default=None, metavar="N",
                   help="BUNDLE: throughput mode, async requests on N streams (0 or 'auto': "
                        "the runtime's THROUGHPUT hint picks); default: latency mode")
    p.add_argument("--rotate", type=int, default=8, metavar="N",
                   help="distinct input batches cycled through (8; 1 reuses one input, "
                        "as benchmark_app does)")
    p.add_argument("--json", type=Path, nargs="?", const=Path("-"), default=None, metavar="PATH",
                   help="write the report JSON here (no PATH or '-': print it instead)")


# -- commands -------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from modelport.evaluate import Budget
    from modelport.pipeline import EXPORT_BENCH, export
    from modelport.runtimes.base import BuildOptions

    budget = Budget(
        min_cosine=args.min_cosine if args.min_cosine is not None else Budget.min_cosine,
        max_accuracy_drop=(args.max_accuracy_drop / 100 if args.max_accuracy_drop is not None
                           else Budget.max_accuracy_drop),
    )
    options = BuildOptions(calibration_method=args.calib_method, int8_mode=args.int8_mode,
                           threads=args.threads)
    if args.trt_profile:
        from modelport.runtimes.trt_engine import parse_axes

        options.extra["trt_profile"] = parse_axes(args.trt_profile)  # bad syntax: exit 2 now
    if args.trt_workspace:
        options.extra["trt_workspace_mib"] = args.trt_workspace
    if args.shape:
        from modelport.runtimes.tflite_convert import parse_shape

        options.extra["shapes"] = dict(parse_shape(s) for s in args.shape)  # bad syntax: exit 2
    if args.io:
        options.extra["io"] = args.io
    if args.tflite_float_ops:
        options.extra["float_ops"] = [op.strip() for op in args.tflite_float_ops.split(",")
                                      if op.strip()]
    if args.torch_compile:
        options.extra["torch_compile"] = True
    if args.max_drop is not None and not 0.0 <= args.max_drop < 1.0:
        raise UsageError(f"--max-drop is a fraction in [0, 1), e.g. 0.01; got {args.max_drop}")
    if args.accuracy_control:
        options.extra["accuracy_control"] = True
    if args.max_drop is not None:
        options.extra["max_drop"] = args.max_drop
    try:
        result = export(
            args.model, args.targets, out=args.out, calib=args.calib, eval=args.eval,
            force=args.force, allow_accuracy_drop=args.allow_accuracy_drop, budget=budget,
            bench=None if args.no_bench else EXPORT_BENCH, options=options,
            threads=args.threads, simplify=args.simplify, opset=args.opset,
            progress=not args.quiet,
        )
    except ModelportError as exc:
        partial = getattr(exc, "result", None)
        if partial is not None:
            print(partial.table())
            _write_rows(args.json, partial.rows)
        raise
    print(result.table())
    _write_rows(args.json, result.rows)
    for target, path in result.bundles.items():
        log.info("bundle %s -> %s", target, path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modelport import registry
    from modelport.specs import Target

    targets = []
    for name in DEMO_TARGETS:
        if name not in registry.all_target_names():
            continue
        target = Target.parse(name)
        if registry.get_backend(target.runtime).availability(target).ok:
            targets.append(name)
    argv = ["export", DEMO_MODEL, *[x for t in targets for x in ("--target", t)],
            "--out", args.out, "--force"]
    print("$ modelport " + shlex.join(argv), flush=True)
    sub = build_parser().parse_args((["--quiet"] if args.quiet else []) + argv)
    return cmd_export(sub)


def cmd_bench(args: argparse.Namespace) -> int:
    from modelport.bench.commands import cmd_bench as run

    return run(args)  # bundle(s) -> device report; model -> the whole target matrix


def cmd_verify(args: argparse.Namespace) -> int:
    from modelport.bundle.verify import verify_bundle

    report = verify_bundle(args.bundle, threads=args.threads)
    line = f"OK {report['target']}: {report['files_checked']} files match their sha256"
    if report.get("outputs_checked"):
        m = report["metrics"]
        line += (f"; {m['samples']} stored samples vs reference: cosine {m['cosine_mean']:.5f}"
                 f" (min {m['cosine_min']:.5f}), max abs err {m['max_abs_err']:.3g}")
    print(line)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from modelport.bundle.archive import pack_bundle

    print(f"packed {pack_bundle(args.bundle, args.out, force=args.force)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from modelport.bundle import open_bundle

    bundle = open_bundle(args.bundle)
    if args.text:
        tokenizer = bundle.tokenizer()
        if tokenizer is None:
            raise UsageError(f"{bundle.path} has no tokenizer: use --input file.npz instead")
        from modelport.pipeline import _fit_arrays

        feeds = _fit_arrays(tokenizer.encode(args.text, {s.name: s for s in bundle.inputs}),
                            bundle.inputs)
    else:
        from modelport.calibration_data.sources import _read_arrays

        if not args.input.is_file():
            raise UsageError(f"input file '{args.input}' not found")
        feeds = _read_arrays(args.input, {s.name: s for s in bundle.inputs})
    with bundle.session(threads=args.threads) as session:
        outputs = session.infer(feeds)
    np.set_printoptions(precision=5, suppress=True, threshold=64, edgeitems=4, linewidth=100)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype}{list(value.shape)}")
        print(np.array2string(value))
    if args.json:
        from modelport.bundle.atomic import write_json_atomic

        write_json_atomic(args.json, {k: v.tolist() for k, v in outputs.items()})
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from modelport import registry
    from modelport.bundle import open_bundle

    bundle = open_bundle(args.bundle)
    backend = registry.get_backend(bundle.target.runtime)()
    build = getattr(backend, "build_on_device", None)
    if build is None:
        raise UsageError(f"{bundle.target} bundles run as shipped; only TensorRT bundles build "
                         "an engine on the device")
    record = build(bundle, rebuild=args.rebuild)
    verb = "built" if record.get("built_now") else "reused"
    print(f"{verb} {record['engine_path']} for {record['gpu_name']} (compute capability "
          f"{record['compute_capability']}, TensorRT {record['tensorrt_version']})")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from modelport.bench.table import render
    from modelport.targets import list_targets

    rows = list_targets()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(render(rows, [("target", "target", str), ("available", "here", str),
                            ("why", "why not / notes", str)]))
    return 0


# -- plumbing -------------------------------------------------------------------------------
def _parse_batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--batch takes comma-separated integers like 1,8,32, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--batch takes positive integers like 1,8,32, got '{text}'")
    return values


def _parse_streams(text: str) -> int:
    if text.strip().lower() == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number of streams or 'auto', got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"takes 0 ('auto') or more streams, got {value}")
    return value


def _write_rows(path: Path | None, rows: list[dict[str, Any]]) -> None:
    if path is not None:
        from modelport.bundle.atomic import write_json_atomic

        write_json_atomic(path, rows)


def _version() -> str:
    from modelport import __version__

    return f"modelport {__version__}"


def _setup_logging(quiet: bool) -> None:
    import os
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1") if quiet else None
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
        msg = record.getMessage()
        return f"warning: {msg}" if record.levelno >= logging.WARNING else msg


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C (every temp dir is removed) but reported as exit 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the cleanup short
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(args.quiet)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except ModelportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        from modelport.bundle.atomic import output_error

        # a full disk or read-only dir outside the bundle writer (temp dir, --json): one line
        error = output_error(exc, Path(exc.filename or "a temporary file"))
        if not isinstance(error, ModelportError):
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"error: {how}; nothing half-written was left behind", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
