"""Typed declarations for everything a user configures, and the one checker for them.

Backend options (``backends/options.py``), compression passes and train settings all declare
their fields with ``option(...)``: type (from the annotation), choices and range. ``check_fields``
and ``check_mapping`` validate a user's values against those declarations before any work
starts, with one line naming where, the key and what is allowed. It sits below both
``backends`` and ``passes`` so neither imports the other.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelport.errors import UsageError

META_KEY = "modelport"


@dataclass(frozen=True)
class OptionSpec:
    """How one option field is offered to users."""

    help: str
    flag: str | None = None  # default: --<backend>-<field-with-dashes>
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound
    below: float | None = None  # exclusive upper bound
    #: the flag may be given more than once; ``parse`` then receives the list of strings
    repeat: bool = False
    #: str -> value (or list[str] -> value with repeat); default: from the field's type
    parse: Callable[[Any], Any] | None = None
    metavar: str | None = None
    cli: bool = True  # False: Python / recipe only


def option(default: Any = None, *, help: str, flag: str | None = None,
           choices: tuple[Any, ...] | None = None, minimum: float | None = None,
           maximum: float | None = None, above: float | None = None,
           below: float | None = None, repeat: bool = False,
           parse: Callable[[Any], Any] | None = None, metavar: str | None = None,
           cli: bool = True) -> Any:
    """A dataclass field carrying its user-facing declaration. ``None`` means the measured
    default (chosen at build or train time), as everywhere in modelport."""
    spec = OptionSpec(help=help, flag=flag, choices=choices, minimum=minimum, maximum=maximum,
                      above=above, below=below, repeat=repeat, parse=parse, metavar=metavar,
                      cli=cli)
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple or None)")
    return dataclasses.field(default=default, metadata={META_KEY: spec})


def check_value(cls: type, f: dataclasses.Field, value: Any, *, where: str) -> None:
    """Type, choices and range of one option value; None is always allowed (= default)."""
    spec: OptionSpec | None = f.metadata.get(META_KEY)
    if value is None or spec is None:
        return
    allowed = _allowed_types(cls, f)
    if allowed and not isinstance(value, allowed) or (isinstance(value, bool) and bool not in
                                                       allowed and allowed):
        names = "/".join(t.__name__ for t in allowed)
        raise UsageError(f"option '{f.name}' takes {names}, got {type(value).__name__} "
                         f"{value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise UsageError(f"option '{f.name}' takes one of {', '.join(map(str, spec.choices))}; "
                         f"got {value!r}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if spec.minimum is not None and value < spec.minimum:
        raise UsageError(f"option '{f.name}' must be >= {spec.minimum:g}; got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise UsageError(f"option '{f.name}' must be <= {spec.maximum:g}; got {value!r}")
    if spec.above is not None and value <= spec.above:
        raise UsageError(f"option '{f.name}' must be > {spec.above:g}; got {value!r}")
    if spec.below is not None and value >= spec.below:
        raise UsageError(f"option '{f.name}' must be < {spec.below:g}; got {value!r}")


def check_fields(obj: Any) -> None:
    """Check every declared field of a dataclass instance (call from ``__post_init__``)."""
    for f in dataclasses.fields(obj):
        check_value(type(obj), f, getattr(obj, f.name), where=type(obj).__name__)


def check_mapping(cls: type, values: Any, *, where: str, what: str = "option") -> None:
    """Unknown keys of ``values`` for dataclass ``cls``: one line naming the closest key."""
    if not isinstance(values, Mapping):
        raise UsageError(f"{where}: expected a mapping of {what} -> value, got "
                         f"{type(values).__name__}")
    known = sorted(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
            raise UsageError(f"{where}: unknown {what} '{key}'; {hint}")


def build_checked(cls: type, values: Any, *, where: str, what: str = "option") -> Any:
    """``cls(**values)`` with unknown keys, types and ranges checked; errors name ``where``."""
    check_mapping(cls, values, where=where, what=what)
    try:
        return cls(**coerce_numbers(cls, values))
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def coerce_numbers(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """YAML 1.1 (PyYAML) reads ``1e-3`` as a string: accept such strings for float fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = dict(values)
    for key, value in out.items():
        f = fields.get(key)
        if f is None or not isinstance(value, str):
            continue
        allowed = _allowed_types(cls, f)
        if float in allowed and str not in allowed:
            try:
                out[key] = float(value)
            except ValueError:
                pass  # the type check names it
    return out


def _allowed_types(cls: type, f: dataclasses.Field) -> tuple[type, ...]:
    hints = typing.get_type_hints(cls)
    hint = hints.get(f.name, Any)
    out: list[type] = []
    for arg in _union_args(hint):
        origin = typing.get_origin(arg) or arg
        if origin is type(None) or origin is Any:
            continue
        if origin is float:
            out.extend([float, int])
        elif isinstance(origin, type):
            out.append(origin)
    return tuple(dict.fromkeys(out))


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)
