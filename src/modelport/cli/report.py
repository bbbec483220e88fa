"""`modelport report merge`: several machines' report.json files -> one table and plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelport.cli.common import emit_report


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    emit_report(merged, Path(args.json) if args.json else None)
    return 0
