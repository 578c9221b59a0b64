"""PNG charts (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402

CHART_METRICS = [("params", "params"), ("flops", "FLOPs"), ("memory_bytes", "memory"), ("latency_ms", "latency"),
                 ("energy_mj", "energy"), ("train_time_s", "train time")]


def save_figure(fig, path: Path) -> None:
    """Render to memory, then write atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def comparison_chart(runs, path: Path) -> None:
    """Each pruned run's resources relative to the dense run (dense = 1), accuracy in the legend."""
    base = runs[0]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        ratios = [getattr(run, attr) / getattr(base, attr) for attr, _ in CHART_METRICS]
        xs = [x + (i - (len(runs) - 1) / 2) * width for x in range(len(CHART_METRICS))]
        ax.bar(xs, ratios, width, label=f"{run.method} (acc {100 * run.test_acc:.2f}%)")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(CHART_METRICS)), [label for _, label in CHART_METRICS])
    ax.set_ylabel(f"relative to {base.method}")
    ax.set_title(f"{base.model} on {base.data}")
    ax.set_ylim(0, max(1.1, ax.get_ylim()[1]))
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(runs), 3))
    save_figure(fig, path)
