"""PNG charts (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402


def _score_legend(name: str, value) -> str:
    return f"acc {100 * value:.2f}%" if name == "accuracy" else f"{name} {value:.2f} dB"


def _score_axis(name: str) -> tuple[float, str]:
    """How the charts show a task's headline: accuracy in %, PSNR in dB."""
    return (100.0, "test accuracy (%)") if name == "accuracy" else (1.0, f"test {name} (dB)")

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
        ax.bar(xs, ratios, width, label=f"{run.method} ({_score_legend(run.score_name, run.score)})")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    kinds = {run.energy.get("kind", "estimated") for run in runs}
    energy = "energy\n(measured)" if kinds == {"measured"} else "energy\n(est.)"
    ax.set_xticks(range(len(CHART_METRICS)), [energy if attr == "energy_mj" else label for attr, label in CHART_METRICS])
    ax.set_ylabel(f"relative to {base.method}")
    ax.set_title(f"{base.model} on {base.data}")
    ax.set_ylim(0, max(1.1, ax.get_ylim()[1]))
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(runs), 3))
    save_figure(fig, path)


# (SweepPoint attribute, axis label, divisor that gives the label's unit)
TRADEOFF_PANELS = {
    "tradeoff_resources.png": [("params", "parameters (M)", 1e6), ("flops", "FLOPs (M MACs)", 1e6),
                               ("memory_bytes", "activation memory (KB)", 1e3)],
    "tradeoff_device.png": [("latency_ms", "CPU latency, batch 1 (ms)", 1), ("energy_mj", "energy / inference (mJ, {energy})", 1),
                            ("cpu_share", "CPU share at {fps:g} inferences/s (% of one core)", 1)],
}


def pareto_front(xs: list[float], ys: list[float]) -> list[int]:
    """Indices of the points no other point beats (lower or equal x with higher y), in order of x."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front, best = [], float("-inf")
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return front


def tradeoff_charts(points: list, out: Path, title: str, subtitle: str = "", fps: float = 10.0) -> list[Path]:
    """The score (accuracy, or PSNR for restoration) against each resource (the paper's Figs. 4–5): every point of a mode as a marker labelled
    with its target, the mode's Pareto front as a line, the dense model as a black star, one legend.

    `points` are sweep points (cdprune.experiment.SweepPoint) that were trained and measured;
    `subtitle` states the budget, CPU and date. The CPU panel shows the share of one core the model
    takes at `fps` inferences per second (CPU time per inference × fps), which is what an edge device
    has to spare; a back-to-back benchmark keeps every thread busy whatever the model.
    """
    energy = "measured" if any(p.energy_kind == "measured" for p in points) else "estimated"
    modes = sorted({p.mode for p in points if p.mode != "dense"})
    colours = {m: f"C{i}" for i, m in enumerate(modes)}
    written = []
    scale, ylabel = _score_axis(points[0].score_name if points else "accuracy")
    for filename, panels in TRADEOFF_PANELS.items():
        fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
        for ax, (key, label, scale) in zip(axes, panels):
            value = (lambda p: p.cpu_ms * fps / 10) if key == "cpu_share" else (lambda p: getattr(p, key) / scale)
            for mode in modes:
                line = [p for p in points if p.mode == mode]
                xs, ys = [value(p) for p in line], [scale * p.score for p in line]
                ax.plot(xs, ys, "o", color=colours[mode], alpha=0.45, markersize=5)
                front = pareto_front(xs, ys)
                ax.plot([xs[i] for i in front], [ys[i] for i in front], "o-", color=colours[mode], label=mode)
                for p, x, y in zip(line, xs, ys):
                    ax.annotate(f"{p.target:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            for p in points:
                if p.mode == "dense":
                    ax.plot(value(p), scale * p.score, "k*", markersize=12, label="dense")
            ax.set_xlabel(label.format(energy=energy, fps=fps))
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9,
                   bbox_to_anchor=(0.5, -0.02))
        fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize=10)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        save_figure(fig, out / filename)
        written.append(out / filename)
    return written
