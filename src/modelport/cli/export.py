"""`modelport export MODEL --target ...` and `modelport demo`."""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from modelport.cli.backend_flags import add_backend_flags, collect
from modelport.cli.common import add_model_args, model_from, write_rows
from modelport.cli.optimize_flags import add_optimize_args, search_from
from modelport.errors import ModelportError

log = logging.getLogger("modelport")

DEMO_MODEL = "builtin:minilm"
DEMO_OUT = "bundles/minilm"
#: the demo runs every one of these that is installed here
DEMO_TARGETS = (
    "onnxruntime:cpu:fp32", "onnxruntime:cpu:int8",
    "openvino:cpu:fp32", "openvino:cpu:int8",
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to one or more targets and write bundles")
    p.add_argument("model", metavar="MODEL",
                   help="builtin:NAME | path/to/file.py:factory | model.pt2 | model.onnx | "
                        "a `modelport compress` output folder | a Hugging Face checkpoint folder")
    add_export_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="run the embedded default export (prints the command it runs)")
    p.add_argument("--out", default=DEMO_OUT, help=f"output directory (default {DEMO_OUT})")
    p.set_defaults(func=cmd_demo)


def add_budget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-cosine", type=float, default=None, help="budget: mean cosine (0.99)")
    p.add_argument("--max-accuracy-drop", type=float, default=None,
                   help="budget for classifiers with labelled evaluation data, in points (1.0)")
    p.add_argument("--min-top1-agreement", type=float, default=None, metavar="FRACTION",
                   help="budget for classifiers without labels: the share of top-1 decisions "
                        "that must match the reference, a fraction in (0, 1] (0.99); judged "
                        "together with --min-cosine")
    p.add_argument("--output-kind", default=None, metavar="KIND",
                   help="what the model's output is: logits (judged by decisions: accuracy drop "
                        "with labels, else top-1 agreement + cosine), embedding or regression "
                        "(judged by cosine); default: the model's declaration, else a [batch, N] "
                        "output is logits unless every reference row has unit norm")
    p.add_argument("--max-perplexity-increase", type=float, default=None, metavar="PCT",
                   help="budget for language models: relative perplexity increase in percent "
                        "(default 10 int4, 2 int8wo and int8, 1 fp16)")


def add_speedup_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--require-speedup", action="store_true",
                   help="refuse (no bundle, exit 2) an INT8/FP16/BF16 target slower than its "
                        "backend's FP32 by more than 5%% in this run (default: flag it)")


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--target", action="append", required=True, dest="targets",
                   metavar="TARGET", help="runtime:device:precision (repeatable); see `targets`")
    p.add_argument("--calib", help="calibration data: folder of .npy/.npz feeds, or a text file")
    p.add_argument("--eval", help="evaluation data (default: held out from --calib / built-in)")
    p.add_argument("--out", default="bundles", help="output directory (one bundle per target)")
    p.add_argument("--force", action="store_true", help="replace existing bundles (atomically)")
    p.add_argument("--allow-accuracy-drop", action="store_true",
                   help="keep a target that misses its accuracy budget (recorded in the bundle)")
    add_budget_args(p)
    add_speedup_arg(p)
    add_cpu_features_arg(p)
    add_cnn_recipe_arg(p)
    add_optimize_args(p)
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: all)")
    p.add_argument("--no-bench", action="store_true", help="skip benchmarking")
    p.add_argument("--simplify", action="store_true", help="simplify the ONNX with onnxslim")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: exporter's)")
    p.add_argument("--json", type=Path, default=None, help="write the results rows as JSON here")
    add_model_args(p)
    add_backend_flags(p)


def budget_from(args: argparse.Namespace):
    from modelport.metrics import Budget

    return Budget(
        min_cosine=args.min_cosine if args.min_cosine is not None else Budget.min_cosine,
        max_accuracy_drop=(args.max_accuracy_drop / 100 if args.max_accuracy_drop is not None
                           else Budget.max_accuracy_drop),
        max_perplexity_increase=(args.max_perplexity_increase / 100
                                 if args.max_perplexity_increase is not None else None),
        min_top1_agreement=(args.min_top1_agreement if args.min_top1_agreement is not None
                            else Budget.min_top1_agreement),
        output_kind=args.output_kind,
    )


def add_cpu_features_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu-features", default=None, metavar="LIST",
                   help="CPU INT8 and bf16: build for a CPU with these features, e.g. "
                        "avx2,fma (no VNNI) or avx2,avx512f,avx512_vnni,avx512_bf16 (bf16 "
                        "targets need avx512_bf16 or amx_bf16); 'none' for none "
                        "(default: this machine's)")


def add_cnn_recipe_arg(p: argparse.ArgumentParser) -> None:
    from modelport.graph_prep.options import HELP

    p.add_argument("--cnn-recipe", default=None, metavar="STEPS", help=HELP)


def cpu_features_from(args: argparse.Namespace) -> tuple[str, ...] | None:
    text = getattr(args, "cpu_features", None)
    if text is None:
        return None
    from modelport.backends.cpu_recipes import parse_features

    return parse_features(text)


def build_options_from(args: argparse.Namespace):
    """Common build settings + every backend flag given, checked before any work starts."""
    from modelport.backends.base import BuildOptions

    return BuildOptions(threads=args.threads, budget=budget_from(args), backends=collect(args),
                        cpu_features=cpu_features_from(args),
                        cnn_recipe=getattr(args, "cnn_recipe", None), search=search_from(args))


def cmd_export(args: argparse.Namespace) -> int:
    from modelport.export_steps import EXPORT_BENCH, export

    options = build_options_from(args)
    try:
        result = export(
            model_from(args, args.model), args.targets, out=args.out, calib=args.calib, eval=args.eval,
            force=args.force, allow_accuracy_drop=args.allow_accuracy_drop,
            budget=options.budget, bench=None if args.no_bench else EXPORT_BENCH,
            options=options, threads=args.threads, simplify=args.simplify, opset=args.opset,
            progress=not args.quiet, require_speedup=args.require_speedup,
        )
    except ModelportError as exc:
        partial = getattr(exc, "result", None)
        if partial is not None:
            print(partial.table())
            write_rows(args.json, partial.rows)
        raise
    print(result.table())
    write_rows(args.json, result.rows)
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
    parser = argparse.ArgumentParser(prog="modelport export")
    parser.add_argument("model")
    add_export_args(parser)
    sub = parser.parse_args(argv[1:])
    sub.quiet = args.quiet
    return cmd_export(sub)
