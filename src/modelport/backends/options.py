"""Typed backend options: each backend declares a frozen dataclass, each field its flag and help.

The CLI builds its backend flags from these declarations (it never names a backend), the Python
API takes the same dataclasses or plain dicts, and a recipe file's ``options:`` section is
checked against them. Everything a user configures is validated here, before any work starts,
with one line naming the key and what is allowed.
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
    minimum: float | None = None
    maximum: float | None = None
    #: the flag may be given more than once; ``parse`` then receives the list of strings
    repeat: bool = False
    #: str -> value (or list[str] -> value with repeat); default: from the field's type
    parse: Callable[[Any], Any] | None = None
    metavar: str | None = None
    cli: bool = True  # False: Python / recipe only


def option(default: Any = None, *, help: str, flag: str | None = None,
           choices: tuple[Any, ...] | None = None, minimum: float | None = None,
           maximum: float | None = None, repeat: bool = False,
           parse: Callable[[Any], Any] | None = None, metavar: str | None = None,
           cli: bool = True) -> Any:
    """A dataclass field carrying its user-facing declaration. ``None`` means the measured
    default of the backend (chosen at build time), as everywhere in modelport."""
    spec = OptionSpec(help=help, flag=flag, choices=choices, minimum=minimum, maximum=maximum,
                      repeat=repeat, parse=parse, metavar=metavar, cli=cli)
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple or None)")
    return dataclasses.field(default=default, metadata={META_KEY: spec})


@dataclass(frozen=True)
class BackendOptions:
    """Base class of every backend's options; validates its fields on construction."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_value(type(self), f, getattr(self, f.name), where=type(self).__name__)

    @classmethod
    def specs(cls) -> list[tuple[dataclasses.Field, OptionSpec]]:
        return [(f, f.metadata[META_KEY]) for f in dataclasses.fields(cls)
                if META_KEY in f.metadata]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str) -> BackendOptions:
        """Build from a dict (a recipe, the Python API); unknown keys name the closest one."""
        if not isinstance(values, Mapping):
            raise UsageError(f"{where}: expected a mapping of option -> value, got "
                             f"{type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean '{close[0]}'?" if close else \
                    f"known: {', '.join(sorted(known))}"
                raise UsageError(f"{where}: unknown option '{key}'; {hint}")
        try:
            return cls(**dict(values))
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None

    def changed(self) -> dict[str, Any]:
        """The fields set away from their defaults (what a manifest records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}


def flag_of(backend: str, f: dataclasses.Field, spec: OptionSpec) -> str:
    return spec.flag or f"--{backend}-{f.name.replace('_', '-')}"


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
    if spec.minimum is not None and isinstance(value, (int, float)) and value < spec.minimum:
        raise UsageError(f"option '{f.name}' must be >= {spec.minimum:g}; got {value!r}")
    if spec.maximum is not None and isinstance(value, (int, float)) and value > spec.maximum:
        raise UsageError(f"option '{f.name}' must be <= {spec.maximum:g}; got {value!r}")


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


def parse_text(cls: type, f: dataclasses.Field, spec: OptionSpec, raw: Any, flag: str) -> Any:
    """A flag's string(s) -> the field's value, with the flag named on a bad value."""
    try:
        if spec.parse is not None:
            return spec.parse(raw)
        allowed = _allowed_types(cls, f)
        if bool in allowed:
            return bool(raw)
        if int in allowed and float not in allowed:
            return int(raw)
        if float in allowed:
            return float(raw)
        if tuple in allowed:
            return tuple(x.strip() for x in str(raw).split(",") if x.strip())
        return raw
    except UsageError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag}: cannot read {raw!r}: {exc}") from None


def is_switch(cls: type, f: dataclasses.Field) -> bool:
    return _allowed_types(cls, f) == (bool,)


def comma_list(text: str) -> tuple[str, ...]:
    """'A,B' -> ('A', 'B') (empty items dropped)."""
    return tuple(x.strip() for x in str(text).split(",") if x.strip())
