"""Numbers and tables for people: decimal units (K/M/G, KB/MB), aligned text and Markdown tables.

At the bottom of the package so that every layer (the planner's messages, the reports) can use it.
"""
from __future__ import annotations

import csv
import io


def human_count(n: float) -> str:
    """1234567 -> '1.23M' (decimal K/M/G)."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def human_bytes(n: float) -> str:
    """1105960 -> '1.11MB' (decimal: 1 KB = 1000 B)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}B"


def human_energy(mj: float) -> str:
    """Millijoules for people: 10.94mJ, 532.10uJ, 1.20J (ASCII units, as a budget takes them)."""
    if abs(mj) >= 1000:
        return f"{mj / 1000:.2f}J"
    return f"{mj:.2f}mJ" if abs(mj) >= 1 else f"{mj * 1000:.2f}uJ"


def table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """An aligned plain-text table; columns in `right` are right-aligned (default: all but the first)."""
    right = set(range(1, len(header))) if right is None else right
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def csv_text(header: list[str], rows: list[list]) -> str:
    """CSV through the standard module (quoting where needed); None becomes an empty field."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()
