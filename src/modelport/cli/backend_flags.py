"""Backend flags, generated from each registered backend's typed options.

The CLI never names a backend: it walks the registry, reads each backend's ``Options``
dataclass and adds one flag per field (a flag two backends share, like ``--calib-method``, is
added once and reaches both). After parsing, ``collect`` turns the given flags back into each
backend's options, validated against the same declarations.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import UsageError

log = logging.getLogger("modelport")


@dataclass
class _Flag:
    flag: str
    dest: str
    help: str
    switch: bool
    repeat: bool
    choices: tuple[Any, ...] | None
    metavar: str | None
    owners: list[tuple[str, type, Any, Any]] = field(default_factory=list)  # name, cls, f, spec


def _declared() -> dict[str, _Flag]:
    from modelport import registry
    from modelport.backends.options import flag_of, is_switch

    flags: dict[str, _Flag] = {}
    for name in registry.BACKENDS:
        try:
            cls = registry.get_backend(name).Options
        except ImportError as exc:  # a broken backend must not take the CLI down with it
            log.debug("no flags for backend %s: %s", name, exc)
            continue
        for f, spec in cls.specs():
            if not spec.cli:
                continue
            flag = flag_of(name, f, spec)
            entry = flags.get(flag)
            if entry is None:
                entry = flags[flag] = _Flag(
                    flag, "opt_" + flag.lstrip("-").replace("-", "_"), spec.help,
                    is_switch(cls, f), spec.repeat, spec.choices,
                    spec.metavar or (None if spec.choices else _metavar(cls, f)))
            elif entry.switch != is_switch(cls, f) or entry.choices != spec.choices:
                raise TypeError(f"{flag} is declared differently by {name} and "
                                f"{entry.owners[0][0]}")
            entry.owners.append((name, cls, f, spec))
    return flags


def _metavar(cls: type, f: Any) -> str:
    from modelport.backends.options import _allowed_types

    allowed = _allowed_types(cls, f)
    return "N" if int in allowed and float not in allowed else \
        ("X" if float in allowed else "VALUE")


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """One argument group with every backend's flags (shared flags once)."""
    group = parser.add_argument_group("backend options (from each backend's declared options)")
    for entry in _declared().values():
        owners = ", ".join(dict.fromkeys(o[0] for o in entry.owners))
        text = f"{entry.help} [{owners}]"
        if entry.switch:
            group.add_argument(entry.flag, dest=entry.dest, action="store_true", default=None,
                               help=text)
        else:
            group.add_argument(entry.flag, dest=entry.dest, default=None, help=text,
                               action="append" if entry.repeat else "store",
                               choices=entry.choices, metavar=entry.metavar)


def collect(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Parsed flags -> {backend name: {field: value}} for the flags that were given."""
    from modelport.backends.options import check_value, parse_text

    out: dict[str, dict[str, Any]] = {}
    for entry in _declared().values():
        raw = getattr(args, entry.dest, None)
        if raw is None:
            continue
        for name, cls, f, spec in entry.owners:
            value = True if entry.switch else parse_text(cls, f, spec, raw, entry.flag)
            try:
                check_value(cls, f, value, where=entry.flag)
            except UsageError as exc:
                raise UsageError(f"{entry.flag}: {exc}") from None
            out.setdefault(name, {})[f.name] = value
    return out
