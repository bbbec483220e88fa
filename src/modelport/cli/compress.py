"""`modelport compress MODEL --recipe RECIPE --out DIR` and
`modelport compress MODEL --goal speed=5x --keep 0.97 --target T --out DIR` (a search)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("modelport")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from modelport.cli.common import parse_duration
    from modelport.passes.recipes import BUILTIN_RECIPES

    p = sub.add_parser(
        "compress", help="prune / distill / factorize / QAT a torch model into a directory "
                         "that `export` accepts; or search for a student meeting a speed goal",
        description="Run a compression recipe (--recipe), or search for one (--goal speed=Nx "
                    "--keep F --target T: layer drop, attention-head and FFN-neuron pruning, "
                    "distillation with hidden-state and attention-map losses, then PTQ or QAT, "
                    "whichever keeps more). The output directory is a MODEL for `export`. "
                    f"Built-in recipes: {', '.join(BUILTIN_RECIPES)}.")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="builtin:NAME | file.py:factory | model.pt2 | a Hugging Face encoder "
                        "folder (feature-extraction, text-classification, token-classification; "
                        "--goal needs BERT-style blocks) (default: the recipe's model)")
    p.add_argument("--recipe", "-r", default=None,
                   help="a built-in recipe name or a YAML file (optional with --goal)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--calib", help="training/calibration data (default: the model's own); "
                                   "unlabeled text is enough: the teacher labels it")
    p.add_argument("--eval", help="evaluation data (default: held out from --calib / built-in); "
                                  "only reported, never used to choose")
    p.add_argument("--force", action="store_true", help="replace an existing output (atomically)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap every training loop at N steps (quick runs)")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the pass reports (with --goal: the search report) here")
    g = p.add_argument_group("search (--goal)")
    g.add_argument("--goal", default=None,
                   help="speed=Nx: N times the torch FP32 teacher's batch-1 speed on this "
                        "machine, the student timed on --target")
    g.add_argument("--keep", type=float, default=0.97,
                   help="fraction of the teacher's task metric to keep, on a validation slice "
                        "of the calibration data: the pairwise-similarity Spearman proxy for "
                        "embedders, accuracy (labels) or top-1 agreement for classifiers "
                        "(default 0.97)")
    g.add_argument("--target", default=None,
                   help="backend the student is timed on, e.g. openvino:cpu:int8 (INT8: PTQ "
                        "there, QAT as its own Q/DQ graph on that backend's fp32 target)")
    g.add_argument("--augment", type=int, default=0, metavar="N",
                   help="text: N extra training rows made from the --calib sentences")
    g.add_argument("--max-time", type=parse_duration, default=None, metavar="DURATION",
                   help="stop searching after this long (10m, 1h) and write the best so far "
                        "(Ctrl-C does the same)")
    g.add_argument("--epochs", type=int, default=3, help="distillation epochs per candidate")
    g.add_argument("--max-candidates", type=int, default=6,
                   help="stop after this many measured candidates")
    g.add_argument("--threads", type=int, default=None,
                   help="threads of every timed session, the torch teacher's and the "
                        "students' alike (default: each runtime's own; 1 on a busy machine, "
                        "where torch's OpenMP threads slow down far more than a runtime's)")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    from modelport.errors import UsageError

    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
    if args.goal is not None:
        return _search(args)
    if args.recipe is None:
        raise UsageError("give --recipe (a built-in name or a YAML file) or --goal speed=Nx "
                         "--target T to search for one")
    from modelport.passes.compress_steps import compress
    from modelport.passes.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    model = args.model or recipe.get("model")
    if not model:
        raise UsageError(f"recipe '{recipe['name']}' names no model: give MODEL")
    result = compress(model, recipe, out=args.out, force=args.force, calib=args.calib,
                      eval=args.eval, progress=not args.quiet, max_steps=args.max_steps)
    print(result.table())
    print(f"wrote {result.out}: export it with `modelport export {result.out} --target ...`")
    if args.json:
        from modelport.io import write_json_atomic

        write_json_atomic(args.json, [r.to_dict() for r in result.reports])
    return 0


def _search(args: argparse.Namespace) -> int:
    from modelport.errors import BundleExists, UsageError
    from modelport.passes.goal_measure import Timing
    from modelport.passes.goal_search import SearchSettings, parse_goal, search

    if args.recipe is not None:
        raise UsageError("give --recipe or --goal, not both")
    speed = parse_goal(args.goal)
    if not args.model:
        raise UsageError("--goal needs MODEL (builtin:NAME or a Hugging Face encoder folder)")
    if not args.target:
        raise UsageError("--goal needs --target, the backend the student is timed on "
                         "(e.g. openvino:cpu:int8)")
    for flag, value, low in (("--augment", args.augment, 0), ("--epochs", args.epochs, 1),
                             ("--max-candidates", args.max_candidates, 1),
                             ("--threads", 1 if args.threads is None else args.threads, 1)):
        if value < low:
            raise UsageError(f"{flag} must be at least {low}, got {value}")
    if args.out.exists() and not args.force:
        raise BundleExists(f"'{args.out}' exists already: pass --force to replace it")
    settings = SearchSettings(epochs=args.epochs, augment=args.augment, max_steps=args.max_steps,
                              max_time=args.max_time, max_candidates=args.max_candidates,
                              timing=Timing(threads=args.threads))
    started = time.time()
    try:
        report = search(args.model, speed=speed, keep=args.keep, target=args.target,
                        out=args.out, force=args.force, calib=args.calib, eval=args.eval,
                        settings=settings, progress=not args.quiet)
    except KeyboardInterrupt:
        written = args.out / "search.json"
        if written.is_file() and written.stat().st_mtime >= started:
            print(f"interrupted: the best candidate so far is in {args.out} (search.json "
                  "lists every candidate measured)", file=sys.stderr)
            return 130
        raise
    far = report["best_vs_goal"]
    print(f"{report['stopped']}: best candidate {report['best']} runs {far['speed']:.2f}x the "
          f"torch teacher on {args.target} and keeps {far['keep']:.3f} of its "
          f"{report['goal']['metric']}" + ("" if report["met"] else
                                          f" (goal {speed:g}x, keep {args.keep:g})"))
    print(f"wrote {args.out}: {len(report['candidates'])} candidates in search.json, "
          f"pareto.png; export it with `modelport export {args.out} --target "
          f"{_export_target(report)}`")
    if args.json:
        from modelport.io import write_json_atomic

        write_json_atomic(args.json, report)
    return 0


def _export_target(report: dict) -> str:
    best = report["candidates"][report["best"]]
    return best["timed_on"]
