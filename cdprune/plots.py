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
    kinds = {run.energy.get("kind", "estimated") for run in runs}
    energy = "energy\n(measured)" if kinds == {"measured"} else "energy\n(est.)"
    ax.set_xticks(range(len(CHART_METRICS)), [energy if attr == "energy_mj" else label for attr, label in CHART_METRICS])
    ax.set_ylabel(f"relative to {base.method}")
    ax.set_title(f"{base.model} on {base.data}")
    ax.set_ylim(0, max(1.1, ax.get_ylim()[1]))
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(runs), 3))
    save_figure(fig, path)


TRADEOFF_PANELS = {
    "tradeoff_resources.png": [("params", "parameters"), ("flops", "FLOPs (MACs)"), ("memory_bytes", "memory (bytes)")],
    "tradeoff_device.png": [("latency_ms", "CPU latency, batch 1 (ms)"), ("energy_mj", "energy / inference (mJ, est.)"),
                            ("cpu_percent", "CPU utilisation (% of a core)")],
}


def tradeoff_charts(points: list, out: Path, title: str) -> list[Path]:
    """Accuracy against each resource, one line per mode and the dense model as a star (the paper's Figs. 4–5).

    `points` are sweep points (cdprune.experiment.SweepPoint) that were trained and measured."""
    written = []
    for filename, panels in TRADEOFF_PANELS.items():
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
        for ax, (key, label) in zip(axes, panels):
            for mode in sorted({p.mode for p in points if p.mode != "dense"}):
                line = sorted((p for p in points if p.mode == mode), key=lambda p: getattr(p, key))
                ax.plot([getattr(p, key) for p in line], [100 * p.test_acc for p in line], "o-", label=mode)
                for p in line:
                    ax.annotate(f"{p.target:g}", (getattr(p, key), 100 * p.test_acc), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
            for p in points:
                if p.mode == "dense":
                    ax.plot(getattr(p, key), 100 * p.test_acc, "k*", markersize=11, label="dense")
            ax.set_xlabel(label)
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
        axes[0].legend(frameon=False, fontsize=8)
        fig.suptitle(title)
        save_figure(fig, out / filename)
        written.append(out / filename)
    return written
