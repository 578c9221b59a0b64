"""The shape of every result the library returns: a dataclass that serialises itself.

Each command's result (a profile, a plan, a run's metrics, a benchmark, an export, a
comparison, a sweep) is one of these, so the CLI's `--json` output and the files written
into run directories come from the same place.
"""
from __future__ import annotations

import json
from dataclasses import asdict

VERSION = "0.1.0"  # the package's version (cdprune.__version__), here at the bottom so every layer can record it


class Record:
    """Mixin for result dataclasses: `to_dict()` gives JSON-ready values, `to_json()` the text."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"
