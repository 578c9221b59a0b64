"""Human-readable tables: the CLI prints these, the library returns records."""
from __future__ import annotations

from .complexity import METRICS, Profile, Totals
from .formatting import human_bytes, human_count, human_metric, markdown_table, table

METRIC_LABELS = {"params": "params", "flops": "FLOPs", "memory": "memory"}


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


def reduction_table(before: Totals, after: Totals, latency: dict | None = None) -> str:
    """Totals before and after pruning; `latency` adds the estimated latency row of latency-aware plans."""
    reduction = after.reduction_from(before)
    rows = [[METRIC_LABELS[m], human_metric(m, before.metric(m)), human_metric(m, after.metric(m)), f"{reduction[m]:.1%}"]
            for m in METRICS]
    if latency:
        rows.append(["latency (est.)", f"{latency['before_ms']:.2f}ms", f"{latency['after_ms']:.2f}ms",
                     f"{1 - latency['after_ms'] / latency['before_ms']:.1%}"])
    return table(["", "before", "after", "reduction"], rows)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


# (label, RunMetrics attribute, formatter); ratios are pruned ÷ dense.
COMPARISON_ROWS = [
    ("test accuracy", "test_acc", _pct),
    ("params", "params", human_count),
    ("FLOPs (MACs)", "flops", human_count),
    ("memory (activations)", "memory_bytes", human_bytes),
    ("CPU latency, batch 1", "latency_ms", lambda v: f"{v:.2f} ms"),
    ("energy / inference (est.)", "energy_mj", lambda v: f"{v:.3f} mJ"),
    ("training wall time", "train_time_s", lambda v: f"{v:.0f} s"),
]


def comparison_rows(runs) -> tuple[list[str], list[list[str]]]:
    """Rows of the side-by-side table: one column per run, then each run's ratio to the first (dense)."""
    base = runs[0]
    header = [""] + [r.method for r in runs] + [f"{r.method} / {base.method}" for r in runs[1:]]
    rows = []
    for label, attr, fmt in COMPARISON_ROWS:
        values = [getattr(r, attr) for r in runs]
        if attr == "test_acc":
            ratios = [f"{100 * (v - values[0]):+.2f} pt" for v in values[1:]]
        else:
            ratios = [f"{v / values[0]:.2f}×" if values[0] else "-" for v in values[1:]]
        rows.append([label] + [fmt(v) for v in values] + ratios)
    return header, rows


def comparison_table(runs) -> str:
    header, rows = comparison_rows(runs)
    return table(header, rows)


def comparison_markdown(runs, settings) -> str:
    header, rows = comparison_rows(runs)
    base = runs[0]
    return "\n".join([
        f"# {base.model} on {base.data}: dense vs pruned",
        "",
        f"Both models trained from scratch with the same budget: {settings.epochs} epochs, "
        f"{base.train_size} training images, batch {settings.batch_size}, lr {settings.lr}, seed {settings.seed}; "
        f"tested on {base.test_size} images. Device: {base.device}.",
        "",
        markdown_table(header, rows),
        "",
        f"FLOPs are multiply-accumulates per input; memory is the conv/linear output feature maps at float32. "
        f"Latency: median of batch-1 forward passes on this CPU ({base.latency.get('threads')} threads). "
        f"Energy: {base.energy.get('source')}.",
        "",
    ])


def compare_rows(summaries) -> tuple[list[str], list[list[str]]]:
    """One row per method: accuracy mean ± std, resources and reductions, latency, total training cost."""
    header = ["method", "seeds", "test accuracy", "params", "FLOPs", "memory", "Δparams", "ΔFLOPs", "Δmemory",
              "CPU latency", "train time (all stages)", "train FLOPs (all stages)"]
    rows = []
    for s in summaries:
        r = s.reduction
        rows.append([s.method, str(s.seeds), f"{100 * s.acc_mean:.2f} ± {100 * s.acc_std:.2f}%", human_count(s.params),
                     human_count(s.flops), human_bytes(s.memory_bytes), f"-{r['params']:.1%}", f"-{r['flops']:.1%}",
                     f"-{r['memory']:.1%}", f"{s.latency_ms:.2f} ms", f"{s.train_time_s:.0f} s",
                     human_count(s.train_flops)])
    return header, rows
