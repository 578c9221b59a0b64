"""PNG charts (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import tasks  # noqa: E402
from .metrics import METRICS  # noqa: E402
from .storage import atomic_write_bytes  # noqa: E402


def _score_axis(name: str) -> tuple[float, str]:
    """How the charts show a task's headline, as its task says: accuracy in %, PSNR in dB."""
    score = tasks.by_score(name).score
    return score.scale, score.axis_label



def chart_metrics() -> list[tuple[str, str]]:
    """(run attribute, label) of the comparison chart's bars: every metric that runs record, then the training time."""
    return [(m.run_field, m.title) for m in METRICS.values() if m.run_field] + [("train_time_s", "train time")]


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
    bars = chart_metrics()
    for i, run in enumerate(runs):
        ratios = [getattr(run, attr) / getattr(base, attr) for attr, _ in bars]
        xs = [x + (i - (len(runs) - 1) / 2) * width for x in range(len(bars))]
        score = tasks.by_score(run.score_name).score
        ax.bar(xs, ratios, width, label=f"{run.method} ({score.legend(run.score)})")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    kinds = {run.energy.get("kind", "estimated") for run in runs}
    energy = "energy\n(measured)" if kinds == {"measured"} else "energy\n(est.)"
    ax.set_xticks(range(len(bars)), [energy if attr == "energy_mj" else label for attr, label in bars])
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


# Each target gets its own marker, so a point's target reads off the legend with no text beside it
# (labels of nearby points overlapped). Targets outside this table take the spare markers in turn.
TARGET_MARKERS = {0.3: "o", 0.5: "s", 0.7: "^", 0.9: "D"}
SPARE_MARKERS = ("v", "P", "X", "h", "<", ">")


def tradeoff_series(points: list, fps: float = 10.0) -> dict:
    """What the trade-off charts plot, in the units of their axis labels.

    {filename: [(x label, {mode: [(x, y, target), ...]}), ...]} with one entry per panel; the dense
    point is under mode "dense". y is the score on the chart's axis (accuracy in %, PSNR in dB); the
    CPU panel's x is the share of one core at `fps` inferences/s: CPU ms per inference × fps / 10.
    """
    energy = "measured" if any(p.energy_kind == "measured" for p in points) else "estimated"
    y_scale, _ = _score_axis(points[0].score_name if points else tasks.CLASSIFY.score.name)
    out = {}
    for filename, panels in TRADEOFF_PANELS.items():
        out[filename] = []
        for key, label, divisor in panels:
            def x_of(p, key=key, divisor=divisor):
                return p.cpu_ms * fps / 10 if key == "cpu_share" else getattr(p, key) / divisor
            series = {}
            for p in points:
                series.setdefault(p.mode, []).append((x_of(p), y_scale * p.score, _goal_of(p)))
            out[filename].append((label.format(energy=energy, fps=fps), series))
    return out


def _goal_of(point):
    """What a sweep point aimed at: its budget's text in a budget sweep, else its target."""
    return getattr(point, "budget", None) or point.target


def budget_series(points: list, metric: str) -> dict:
    """What the budget chart plots: {mode: [(limit, measured, score on the chart's axis, budget text), ...]} in the
    order of the limits, for the points whose check has a row for `metric`; the dense point under "dense" as
    (None, None, score, None). `measured` is the check's figure (p50 of the shipped file for latency)."""
    y_scale, _ = _score_axis(points[0].score_name if points else tasks.CLASSIFY.score.name)
    out: dict[str, list] = {}
    for p in points:
        if p.mode == "dense":
            out.setdefault("dense", []).append((None, None, y_scale * p.score, None))
            continue
        row = next((r for r in (p.budget_check or {}).get("rows", []) if r["metric"] == metric), None)
        if row is not None:
            out.setdefault(p.mode, []).append((row["limit"], row["measured"], y_scale * p.score, p.budget))
    return {mode: sorted(line, key=lambda t: -(t[0] or 0)) for mode, line in out.items()}


def budget_chart(points: list, metric: str, path: Path, title: str, subtitle: str = "") -> Path:
    """The score against the budget's metric as the shipped models measure it (latency: p50 of the shipped file),
    one line per mode; each limit a dotted vertical line, the dense model's score a dashed horizontal one."""
    chosen = METRICS[metric]
    series = budget_series(points, metric)
    _, ylabel = _score_axis(points[0].score_name if points else tasks.CLASSIFY.score.name)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    limits = sorted({limit for mode, line in series.items() if mode != "dense" for limit, *_ in line})
    for limit in limits:
        ax.axvline(limit, color="grey", ls=":", lw=0.9)
    for i, (mode, line) in enumerate(m for m in series.items() if m[0] != "dense"):
        ax.plot([m for _, m, _, _ in line], [y for _, _, y, _ in line], "o-", color=f"C{i}", label=mode)
    for _, _, y, _ in series.get("dense", []):
        ax.axhline(y, color="k", ls="--", lw=1, label="dense")
    ax.set_xlabel(f"{chosen.title}, measured ({chosen.unit}); dotted: the limits")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=10)
    save_figure(fig, path)
    return path


def tradeoff_charts(points: list, out: Path, title: str, subtitle: str = "", fps: float = 10.0) -> list[Path]:
    """The score (accuracy, or PSNR for restoration) against each resource (the paper's Figs. 4–5).

    Each mode has a colour and each target a marker; the mode's Pareto front is a solid line through
    its points that nothing beats, the other points are faded; the dense model is a black star; one
    legend for the figure. `points` are sweep points (cdprune.experiment.SweepPoint) that were trained
    and measured; `subtitle` states the budget, CPU and date. The CPU panel shows the share of one core
    the model takes at `fps` inferences per second, which is what an edge device has to spare; a
    back-to-back benchmark keeps every thread busy whatever the model.
    """
    from matplotlib.lines import Line2D

    modes = sorted({p.mode for p in points if p.mode != "dense"})
    colours = {m: f"C{i}" for i, m in enumerate(modes)}
    # A point's goal: its target, or a budget sweep's budget (kept in the sweep's order).
    targets = list(dict.fromkeys(_goal_of(p) for p in points if p.mode != "dense"))
    targets = targets if any(isinstance(t, str) for t in targets) else sorted(targets)
    spare = iter(SPARE_MARKERS * (1 + len(targets) // len(SPARE_MARKERS)))
    markers = {t: TARGET_MARKERS.get(t) or next(spare) for t in targets}
    _, ylabel = _score_axis(points[0].score_name if points else tasks.CLASSIFY.score.name)
    written = []
    for filename, panels in tradeoff_series(points, fps).items():
        fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
        for ax, (xlabel, series) in zip(axes, panels):
            for mode in modes:
                line = series.get(mode, [])
                xs, ys = [x for x, _, _ in line], [y for _, y, _ in line]
                front = set(pareto_front(xs, ys))
                ordered = sorted(front, key=lambda i: xs[i])
                ax.plot([xs[i] for i in ordered], [ys[i] for i in ordered], "-", color=colours[mode], lw=1.5)
                for i, (x, y, target) in enumerate(line):
                    ax.plot(x, y, markers[target], color=colours[mode], markersize=6,
                            alpha=1.0 if i in front else 0.35)
            for x, y, _ in series.get("dense", []):
                ax.plot(x, y, "k*", markersize=13)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        handles = ([Line2D([], [], color=colours[m], lw=1.5, label=m) for m in modes]
                   + [Line2D([], [], ls="", marker=markers[t], color="grey",
                             label=t if isinstance(t, str) else f"target {t:g}") for t in targets]
                   + [Line2D([], [], ls="", marker="*", color="k", markersize=11, label="dense")])
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9,
                   bbox_to_anchor=(0.5, -0.02))
        fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize=10)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        save_figure(fig, out / filename)
        written.append(out / filename)
    return written
