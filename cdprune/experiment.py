"""Report — methods trained with the same budget, side by side.

`main_job` is what `cdprune run` does: plan, train the dense and the pruned
model, measure both, and write a table, report.md and a chart. `compare`
puts any set of methods (the modes and the baselines) side by side over
seeds; `sweep` draws the accuracy–resource trade-off curves. Every run
directory is resumable, so re-running skips finished runs and continues
interrupted ones. With backend="ray" the trainings of `compare` and `sweep` run as
Ray tasks (see backends.py) and land in the same tables.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import models
from .backends import Resources, Task, run_tasks
from .data import dataset_info
from .errors import CdpruneError, UnreachableTarget
from .io import atomic_write_json, atomic_write_text
from .methods import Job, get_method
from .pruning import get_mode
from .pruning import make_plan
from .formatting import markdown_table
from .report import compare_rows, comparison_markdown
from .runs import RunMetrics, RunSettings, train_run

# The embedded default: small enough for about 10 minutes on a 2-core CPU.
DEFAULT_JOB = dict(model="vgg16", data="fashion-mnist", mode="fa", target=0.5, epochs=3, train_subset=4000,
                   test_subset=2000, batch_size=32, lr=0.02)


def main_job(out: str | Path, settings: RunSettings, mode: str = "fa", target: float = 0.5, *,
             download: bool = False, progress: bool = True, plot: bool = True) -> list[RunMetrics]:
    """Train dense and `mode`-pruned models with the same settings; write the comparison into `out`."""
    out = Path(out)
    pruned_name = f"{mode}-{target:g}"
    # Planning first: an unreachable target fails before any training time is spent.
    info = dataset_info(settings.data)
    pruning = make_plan(models.create(settings.model, num_classes=info.num_classes, in_channels=info.input_shape[0]),
                        info.input_shape, mode, target, seed=settings.seed)
    _announce("dense", out / "dense", progress)
    dense = train_run(out / "dense", settings, resume=True, download=download, progress=progress)
    _announce(pruned_name, out / pruned_name, progress)
    pruned = train_run(out / pruned_name, settings, pruning, resume=True, download=download, progress=progress)
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


# ---- compare: methods side by side, over seeds -------------------------------------------------

@dataclass(frozen=True)
class MethodSummary:
    """One method over its seeds: accuracy mean ± std (fractions), resources and training cost (means)."""

    method: str
    seeds: int
    acc_mean: float
    acc_std: float
    params: float
    flops: float
    memory_bytes: float
    reduction: dict
    latency_ms: float
    energy_mj: float
    train_time_s: float  # every stage of the method: dense pre-training and fine-tuning included
    train_flops: float  # MACs, every stage

    @classmethod
    def of(cls, method: str, runs: list[RunMetrics]) -> "MethodSummary":
        acc = np.array([r.test_acc for r in runs])
        mean = lambda attr: float(np.mean([getattr(r, attr) for r in runs]))
        return cls(method=method, seeds=len(runs), acc_mean=float(acc.mean()),
                   acc_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                   params=mean("params"), flops=mean("flops"), memory_bytes=mean("memory_bytes"),
                   reduction={m: float(np.mean([r.reduction[m] for r in runs])) for m in runs[0].reduction},
                   latency_ms=mean("latency_ms"), energy_mj=mean("energy_mj"),
                   train_time_s=mean("total_train_time_s"), train_flops=mean("total_train_flops"))


def compare(out: str | Path, settings: RunSettings, methods: list[str], target: float, *, metric: str = "flops",
            seeds: int = 1, download: bool = False, progress: bool = True, backend: str = "local",
            resources: Resources = Resources()) -> list[MethodSummary]:
    """Train every method for every seed (seed, seed+1, …) to the same `target` reduction of `metric`.

    Finished runs are reused, so re-running only trains what is missing. Writes compare.md,
    compare.csv and compare.json into `out`. backend="ray" trains the runs as Ray tasks; `out`
    must then be on storage that every node of the cluster sees.
    """
    chosen = [get_method(m) for m in methods]
    if not 0 < target < 1:
        raise CdpruneError(f"target {target:g} is outside (0, 1): give the fraction to remove, e.g. --target 0.5")
    if seeds < 1:
        raise CdpruneError(f"--seeds {seeds} must be at least 1")
    out = Path(out)
    local = backend == "local"
    tasks = []
    for k in range(seeds):
        seed_settings = replace(settings, seed=settings.seed + k)
        job = Job(out / f"seed-{seed_settings.seed}", seed_settings, target, metric, progress and local, download)
        dense = _task_name("dense", seed_settings.seed)
        # Ranking methods start from the seed's dense run: train it once, before them.
        if any(m.needs_dense for m in chosen) and "dense" not in methods:
            tasks.append(Task(dense, _run_method, ("dense", job)))
        for m in chosen:
            tasks.append(Task(_task_name(m.name, seed_settings.seed), _run_method, (m.name, job),
                              after=dense if m.needs_dense else None))
    outcome = run_tasks(tasks, backend, resources, progress)
    runs = {m.name: [outcome.results[name] for k in range(seeds)
                     if (name := _task_name(m.name, settings.seed + k)) in outcome.results] for m in chosen}
    runs = {name: rs for name, rs in runs.items() if rs}  # a method whose every seed failed has no row
    summaries = [MethodSummary.of(name, rs) for name, rs in runs.items()]
    if summaries:
        _write_compare(out, summaries, runs, settings, target, metric)
    outcome.raise_failures()
    return summaries


def _task_name(method: str, seed: int) -> str:
    return f"{method} (seed {seed})"


def _run_method(name: str, job: Job) -> RunMetrics:
    """One method for one seed (a module-level function, so that Ray can ship it)."""
    _announce(_task_name(name, job.settings.seed), job.root / name, job.progress)
    return get_method(name).run(job)


def _write_compare(out: Path, summaries, runs, settings: RunSettings, target: float, metric: str) -> None:
    atomic_write_json(out / "compare.json", {
        "settings": asdict(settings), "target": target, "metric": metric,
        "summaries": [asdict(s) for s in summaries],
        "runs": {name: [asdict(r) for r in rs] for name, rs in runs.items()}})
    header, rows = compare_rows(summaries)
    csv_rows = [",".join(["method", "seeds", "acc_mean", "acc_std", "params", "flops", "memory_bytes",
                          "params_reduction", "flops_reduction", "memory_reduction", "latency_ms", "energy_mj",
                          "train_time_s", "train_flops"])]
    for s in summaries:
        csv_rows.append(",".join(str(v) for v in [
            s.method, s.seeds, s.acc_mean, s.acc_std, s.params, s.flops, s.memory_bytes, s.reduction["params"],
            s.reduction["flops"], s.reduction["memory"], s.latency_ms, s.energy_mj, s.train_time_s, s.train_flops]))
    atomic_write_text(out / "compare.csv", "\n".join(csv_rows) + "\n")
    first = next(iter(runs.values()))[0]
    text = "\n".join([
        f"# {settings.model} on {settings.data}: methods at a {target:g} {metric} reduction", "",
        f"{settings.epochs} epochs (fine-tuning: half as many at a tenth of the LR), {first.train_size} training "
        f"images, {first.test_size} test images, batch {settings.batch_size}, lr {settings.lr}; accuracy is the mean ± "
        f"std over seeds. Training cost counts every stage (dense pre-training and fine-tuning for the ranking "
        f"methods); training FLOPs = 3 × MACs per image × images seen.", "",
        markdown_table(header, rows), ""])
    atomic_write_text(out / "compare.md", text)


# ---- sweep: the trade-off curves ---------------------------------------------------------------

SWEEP_FIELDS = ["method", "mode", "target", "test_acc", "params", "flops", "memory_bytes", "latency_ms", "energy_mj",
                "cpu_percent", "train_time_s", "status"]


def sweep(out: str | Path, settings: RunSettings, modes: list[str], targets: list[float], *, download: bool = False,
          progress: bool = True, bench_time_s: float = 1.0, backend: str = "local",
          resources: Resources = Resources()) -> list[dict]:
    """Dense plus every mode × target (each mode reduces its own metric), measured on this device.

    Writes sweep.csv, sweep.json and the trade-off charts tradeoff_resources.png (accuracy
    against params, FLOPs, memory) and tradeoff_device.png (against latency, energy, CPU).
    Targets a mode cannot reach are recorded with status 'unreachable', not trained.
    backend="ray" trains and measures each point as a Ray task, on the node that runs it.
    """
    out = Path(out)
    for m in modes:
        get_mode(m)
    local = backend == "local"
    configs = [("dense", None)] + [(m, t) for m in modes for t in targets]
    tasks = [Task(_point_name(mode, target), _sweep_point, (out, settings, mode, target, bench_time_s,
                                                           progress and local, download))
             for mode, target in configs]
    outcome = run_tasks(tasks, backend, resources, progress)
    points = [outcome.results[t.name] for t in tasks if t.name in outcome.results]
    atomic_write_json(out / "sweep.json", {"settings": asdict(settings), "points": points})
    lines = [",".join(SWEEP_FIELDS)] + [",".join("" if p.get(f) is None else str(p.get(f)) for f in SWEEP_FIELDS)
                                        for p in points]
    atomic_write_text(out / "sweep.csv", "\n".join(lines) + "\n")
    from .plots import tradeoff_charts

    tradeoff_charts([p for p in points if p["status"] == "ok"], out, f"{settings.model} on {settings.data}")
    outcome.raise_failures()
    return points


def _point_name(mode: str, target: float | None) -> str:
    return "dense" if mode == "dense" else f"{mode}-{target:g}"


def _sweep_point(out: Path, settings: RunSettings, mode: str, target: float | None, bench_time_s: float,
                 progress: bool, download: bool) -> dict:
    """Train (or reuse) one point of the sweep and measure it: one row of sweep.csv."""
    from .deploy import bench

    job = Job(out, settings, 0.5, "flops", progress, download)
    name = _point_name(mode, target)
    row = {"method": name, "mode": mode, "target": target, "status": "ok"}
    _announce(name, out / name, progress)
    try:
        if mode == "dense":
            metrics = job.train("dense")
        else:
            model, shape = job.base_model()
            metrics = job.train(name, make_plan(model, shape, mode, target, seed=settings.seed))
    except UnreachableTarget:
        return {**row, "status": "unreachable"}
    measured = bench(str(out / name), min_time_s=bench_time_s, min_repeats=20)
    row.update({k: getattr(metrics, k) for k in ("test_acc", "params", "flops", "memory_bytes", "energy_mj",
                                                  "train_time_s")})
    row.update(latency_ms=measured.p50_ms, cpu_percent=measured.cpu_percent)
    return row
