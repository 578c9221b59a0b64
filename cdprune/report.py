"""Human-readable tables: the CLI prints these, the library returns records."""
from __future__ import annotations

from .complexity import METRICS, Profile, Totals

METRIC_LABELS = {"params": "params", "flops": "FLOPs", "memory": "memory"}


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


def human_metric(metric: str, value: float) -> str:
    return human_bytes(value) if metric == "memory" else human_count(value)


def table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """An aligned plain-text table; columns in `right` are right-aligned (default: all but the first)."""
    right = set(range(1, len(header))) if right is None else right
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def profile_table(profile: Profile) -> str:
    rows = []
    for layer in profile.layers:
        shape = "×".join(map(str, layer.output_shape))
        kernel = "×".join(map(str, layer.kernel_size)) or "-"
        kind = "dwconv" if layer.kind == "conv" and layer.groups > 1 and layer.groups == layer.out_channels else layer.kind
        rows.append([layer.name, kind, f"{layer.in_channels}→{layer.out_channels}", kernel, shape,
                     human_count(layer.params), f"{layer.params_share:.1%}", human_count(layer.flops),
                     f"{layer.flops_share:.1%}", human_bytes(layer.memory_bytes), f"{layer.memory_share:.1%}"])
    t = profile.totals
    rows.append(["total", "", "", "", "", human_count(t.params), "100%", human_count(t.flops), "100%",
                 human_bytes(t.memory_bytes), "100%"])
    header = ["layer", "type", "channels", "kernel", "output", "params", "share", "FLOPs", "share", "memory", "share"]
    lines = table(header, rows, right=set(range(5, 11))).splitlines()
    lines.insert(-1, lines[1])  # a rule above the totals line
    return "\n".join(lines)


def reduction_table(before: Totals, after: Totals) -> str:
    reduction = after.reduction_from(before)
    rows = [[METRIC_LABELS[m], human_metric(m, before.metric(m)), human_metric(m, after.metric(m)), f"{reduction[m]:.1%}"]
            for m in METRICS]
    return table(["", "before", "after", "reduction"], rows)
