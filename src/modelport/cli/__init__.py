"""`modelport ...`: one module per command group; every command has a Python twin
(modelport.export/load/benchmark/verify).

User mistakes print one line (``error: ...``) and exit 2; internal failures exit 1; Ctrl-C or
SIGTERM exit 130/143 after cleanup (temp dirs are removed by the code being interrupted).
Backend-specific flags are generated from each backend's declared options
(``cli/backend_flags.py``): nothing here names a backend.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from modelport._version import __version__
from modelport.cli.common import setup_logging
from modelport.errors import ModelportError
from modelport.terminal import strip_ansi

log = logging.getLogger("modelport")

#: command modules, each with ``add_parsers(subparsers)``; order = order in --help
COMMAND_MODULES = (
    "modelport.cli.export", "modelport.cli.inspect", "modelport.cli.bench", "modelport.cli.compare",
    "modelport.cli.report", "modelport.cli.bundle", "modelport.cli.compress",
    "modelport.cli.targets", "modelport.cli.sweep", "modelport.cli.serve",
    "modelport.cli.triton_repo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelport",
        description="Take a trained PyTorch model to a deployable, measured artifact.",
    )
    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


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
    setup_logging(args.quiet)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except ModelportError as exc:
        _print_error(exc)
        return exc.exit_code
    except OSError as exc:
        from modelport.io import output_error

        # a full disk or read-only dir outside the bundle writer (temp dir, --json): one line
        error = output_error(exc, Path(exc.filename or "a temporary file"))
        if not isinstance(error, ModelportError):
            raise
        _print_error(error)
        return error.exit_code
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        _print_error(f"{how}; nothing half-written was left behind")
        return 143 if isinstance(exc, Terminated) else 130


def _print_error(error: object) -> None:
    """Every error the CLI reports goes through here: one line, terminal escapes removed (a
    library's coloured message must not reach the user's terminal or log as raw codes)."""
    print(f"error: {strip_ansi(str(error))}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
