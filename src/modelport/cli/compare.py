"""`modelport compare`: the same inputs through several artifacts, every output vs the first."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modelport.errors import UsageError


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
            from modelport.io import write_json_atomic

            write_json_atomic(Path(args.json), report)
    if not report["passed"]:
        failed = [c["label"] for c in report["comparisons"] if not c["passed"]]
        print(f"error: {', '.join(failed)} differ(s) from {report['reference']} beyond "
              f"rtol {args.rtol:g} / atol {args.atol:g}", file=sys.stderr)
        return 1
    return 0
