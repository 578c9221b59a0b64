"""Report — dense against pruned, trained with the same budget, side by side.

`main_job` is what `cdprune run` does: plan, train the dense and the pruned
model, measure both, and write a table, report.md and a chart. Every run
directory is resumable, so re-running the job skips finished runs and
continues interrupted ones.
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from . import models
from .data import dataset_info
from .io import atomic_write_json, atomic_write_text
from .pruning import plan as make_plan
from .report import comparison_markdown
from .runs import RunMetrics, RunSettings, train_run

# The embedded default: small enough for about 10 minutes on a 2-core CPU.
DEFAULT_JOB = dict(model="vgg16", data="fashion-mnist", mode="fa", target=0.5, epochs=3, train_subset=4000,
                   test_subset=2000, batch_size=32, lr=0.02)


def pruned_run(out: Path, settings: RunSettings, mode: str, target: float, plan_seed: int | None = None,
               *, download: bool = False, progress: bool = True) -> RunMetrics:
    """Plan with `mode` at `target` on the data's input shape, then train the pruned model from scratch."""
    info = dataset_info(settings.data)
    base = models.create(settings.model, num_classes=info.num_classes, in_channels=info.input_shape[0])
    plan = make_plan(base, info.input_shape, mode, target, seed=settings.seed if plan_seed is None else plan_seed)
    return train_run(out, settings, plan, resume=True, download=download, progress=progress)


def main_job(out: str | Path, settings: RunSettings, mode: str = "fa", target: float = 0.5, *,
             download: bool = False, progress: bool = True, plot: bool = True) -> list[RunMetrics]:
    """Train dense and `mode`-pruned models with the same settings; write the comparison into `out`."""
    out = Path(out)
    pruned_name = f"{mode}-{target:g}"
    # Planning first: an unreachable target fails before any training time is spent.
    info = dataset_info(settings.data)
    make_plan(models.create(settings.model, num_classes=info.num_classes, in_channels=info.input_shape[0]),
              info.input_shape, mode, target, seed=settings.seed)
    _announce("dense", out / "dense", progress)
    dense = train_run(out / "dense", settings, resume=True, download=download, progress=progress)
    _announce(pruned_name, out / pruned_name, progress)
    pruned = pruned_run(out / pruned_name, settings, mode, target, download=download, progress=progress)
    runs = [dense, pruned]
    write_comparison(out, runs, settings, plot=plot)
    return runs


def _announce(name: str, run_dir: Path, progress: bool) -> None:
    if progress:
        state = "finished, reused" if (run_dir / "metrics.json").exists() else "training"
        print(f"{name}: {state} -> {run_dir}", file=sys.stderr)


def write_comparison(out: Path, runs: list[RunMetrics], settings: RunSettings, plot: bool = True) -> None:
    """summary.json, report.md and comparison.png for runs whose first entry is the dense baseline."""
    atomic_write_json(out / "summary.json", {"settings": asdict(settings), "runs": [asdict(r) for r in runs]})
    text = comparison_markdown(runs, settings)
    if plot:
        from .plots import comparison_chart

        comparison_chart(runs, out / "comparison.png")
        text += "\n![dense vs pruned](comparison.png)\n"
    atomic_write_text(out / "report.md", text)
