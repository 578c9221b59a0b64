"""The one rule every registry follows (models, modes, methods, tasks, metrics, formats).

As timm's `register_model` does, registering a name that is already taken warns and keeps the
newer entry: a plug-in may replace a built-in on purpose, but never silently.
"""
from __future__ import annotations

import warnings
from typing import TypeVar

from .errors import CdpruneError

T = TypeVar("T")


def add(table: dict[str, T], name: str, entry: T, kind: str) -> T:
    """Put `entry` in `table` under `name`; warn when the name was registered before."""
    if name in table and table[name] is not entry:
        warnings.warn(f"{kind} '{name}' is registered twice: {_named(entry, 'the later registration')} replaces "
                      f"{_named(table[name], 'the earlier one')}", stacklevel=3)
    table[name] = entry
    return entry


def get(table: dict[str, T], name: str, kind: str, option: str | None = None) -> T:
    """The entry registered under `name`; an unknown name is a one-line error that lists the registered ones."""
    if name not in table:
        raise CdpruneError(f"unknown {kind} '{name}'", f"choose one of {', '.join(table)}", option=option)
    return table[name]


def _named(entry, otherwise: str) -> str:
    """'package.module.Class' for a class or function, so that the warning says which file won."""
    qualname = getattr(entry, "__qualname__", None)
    return f"{entry.__module__}.{qualname}" if qualname else otherwise
