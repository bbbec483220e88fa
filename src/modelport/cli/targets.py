"""`modelport targets`: every registered target, whether it works here, and why not."""

from __future__ import annotations

import argparse
import json


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list every target, whether it works here, and why not")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_targets)


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


