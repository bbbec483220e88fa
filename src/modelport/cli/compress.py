"""`modelport compress MODEL --recipe RECIPE --out DIR` ."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("modelport")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from modelport.passes.recipes import BUILTIN_RECIPES

    p = sub.add_parser(
        "compress", help="prune / distill / factorize / QAT a torch model into a directory "
                         "that `export` accepts",
        description="Run a compression recipe; the output directory is a MODEL for `export`. "
                    f"Built-in recipes: {', '.join(BUILTIN_RECIPES)}.")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="builtin:NAME | file.py:factory | model.pt2 (default: the recipe's model)")
    p.add_argument("--recipe", "-r", required=True, help="a built-in recipe name or a YAML file")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--calib", help="training/calibration data (default: the model's own)")
    p.add_argument("--eval", help="evaluation data (default: held out from --calib / built-in)")
    p.add_argument("--force", action="store_true", help="replace an existing output (atomically)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap every training loop at N steps (quick runs)")
    p.add_argument("--json", type=Path, default=None, help="also write the pass reports here")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    from modelport.errors import UsageError
    from modelport.passes.compress_steps import compress
    from modelport.passes.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    model = args.model or recipe.get("model")
    if not model:
        raise UsageError(f"recipe '{recipe['name']}' names no model: give MODEL")
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
    result = compress(model, recipe, out=args.out, force=args.force, calib=args.calib,
                      eval=args.eval, progress=not args.quiet, max_steps=args.max_steps)
    print(result.table())
    print(f"wrote {result.out}: export it with `modelport export {result.out} --target ...`")
    if args.json:
        from modelport.io import write_json_atomic

        write_json_atomic(args.json, [r.to_dict() for r in result.reports])
    return 0
