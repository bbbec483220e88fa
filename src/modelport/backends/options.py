"""Typed backend options: each backend declares a frozen dataclass, each field its flag and help.

The CLI builds its backend flags from these declarations (it never names a backend), the Python
API takes the same dataclasses or plain dicts, and a recipe file's ``options:`` section is
checked against them. Everything a user configures is validated here, before any work starts,
with one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelport.config_check import (  # noqa: F401 - re-exported: backends declare with these
    META_KEY,
    OptionSpec,
    _allowed_types,
    build_checked,
    check_value,
    option,
)
from modelport.errors import UsageError


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
        return build_checked(cls, values, where=where)

    def changed(self) -> dict[str, Any]:
        """The fields set away from their defaults (what a manifest records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}


def flag_of(backend: str, f: dataclasses.Field, spec: OptionSpec) -> str:
    return spec.flag or f"--{backend}-{f.name.replace('_', '-')}"


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
    except UsageError as exc:  # name the flag once (a parser may already have)
        message = str(exc)
        raise UsageError(message if message.startswith(flag) else f"{flag}: {message}") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag}: cannot read {raw!r}: {exc}") from None


def is_switch(cls: type, f: dataclasses.Field) -> bool:
    return _allowed_types(cls, f) == (bool,)


def comma_list(text: str) -> tuple[str, ...]:
    """'A,B' -> ('A', 'B') (empty items dropped)."""
    return tuple(x.strip() for x in str(text).split(",") if x.strip())
