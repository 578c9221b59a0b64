"""Report — methods trained with the same budget, side by side.

`main_job` is what `cdprune run` does: plan, train the dense and the pruned model,
measure both, and write a table, report.md and a chart. `compare` puts any set of
methods (the modes and the baselines) side by side over seeds; `sweep` draws the
accuracy–resource trade-off curves. All three train through the methods registry
(`methods.run_method`). Every run directory is resumable, so re-running skips finished
runs and continues interrupted ones. With backend="ray" the trainings of `compare` and
`sweep` run as Ray tasks (see backends.py) and land in the same tables.
"""
from __future__ import annotations

import sys
import time
from datetime import date
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import tasks as task_registry
from .backends import Resources, Task, run_tasks
from .deploy import bench
from .deploy.bench import file_latency
from .deploy.export import export_run
from .errors import CdpruneError, UnreachableTarget
from .formatting import csv_text
from .storage import atomic_write_json, atomic_write_text
from .methods import Budget, Goal, Job, check_goal, get_method, plan_goal, run_method
from .pruning import PruningPlan, apply_plan, get_mode
from .pruning.sampler import PlannerConfig
from .records import Record
from .report import compare_markdown, comparison_markdown
from .measure.latency import cpu_description
from .measure.runtimes import get_runtime
from .runs import PLAN_FILE, METRICS_FILE, RunMetrics, RunSettings, read_metrics, record_budget_check, run_name

# The embedded default: VGG-16 at width 0.5 (a quarter of full width's MACs), 12,000 images for 5 epochs,
# sized so that dense comes near convergence (its last epoch adds under a point) in about 4 minutes of training
# on a 2-core AVX-512 CPU, where full width stays under 85 % (benchmarks/results/main_job.md).
DEFAULT_JOB = dict(model="vgg16", data="fashion-mnist", mode="fa", target=0.5, model_args={"width": 0.5}, epochs=5,
                   train_subset=12000, test_subset=5000, batch_size=64, lr=0.04)  # lr at batch 128: 0.02 at batch 64


@dataclass(frozen=True)
class RunComparison(Record):
    """The main job's result: the dense run first, then the pruned one."""

    out: str
    settings: RunSettings
    runs: list[RunMetrics]


def main_job(out: str | Path, settings: RunSettings, mode: str = "fa", target: float | None = None, *,
             planner: PlannerConfig = PlannerConfig(), download: bool = False, progress: bool = True,
             plot: bool = True, budget: Budget | None = None,
             train_budget: str | None = None) -> RunComparison:
    """Train dense and `mode`-pruned models with the same settings; write the comparison into `out`.

    target: the fraction of the mode's metric to remove (default 0.5); budget: upper limits instead
        (a `methods.Budget`, not both), checked after training on the model exported at the budget's
        precision (`check_shipped`).
    planner: the step, floor and rounding the plan is made with (default PlannerConfig()).
    train_budget: "dense-epochs=N": each run gets the training FLOPs of N dense epochs (`parse_train_budget`).
    """
    out = Path(out)
    if budget is None and target is None:
        target = 0.5
    settings, dense_epochs = _budgeted_settings(settings, train_budget)
    job = Job(out, settings, progress, download, dense_epochs)
    check_goal(Goal(mode, target, planner=planner, budget=budget))
    get_mode(mode)  # the main job compares a complexity-driven mode with dense
    if budget is not None:
        budget = _checked(budget, job)
    goal = Goal(mode, target, planner=planner, budget=budget)
    # Planning first: an unreachable target fails before any training time is spent.
    plan = plan_goal(job, goal)
    if progress:
        _announce_estimate(job, [(Goal("dense"), None), (goal, plan)])
    dense = _run(job, Goal("dense"))
    pruned = _run(job, goal, plan)
    runs = [dense, pruned]
    write_comparison(out, runs, settings, plot=plot, planner=planner, budget=budget)
    return RunComparison(str(out), settings, runs)


def _checked(budget: Budget, job: Job) -> Budget:
    """The budget checked against the job's model (`Budget.check`, before anything is written), its plans fitted
    by timing their files as the shipped file is timed after training (`deploy.bench.file_latency`)."""
    budget.check(*job.base_model())
    return budget if budget.timer is not None else replace(budget, timer=file_latency)


def parse_train_budget(text: str | None) -> int | None:
    """"dense-epochs=N" -> N, the dense epochs whose training FLOPs every method gets (None: no budget)."""
    if text is None:
        return None
    key, _, value = str(text).partition("=")
    if key.strip() != "dense-epochs" or not value.strip().isdigit() or int(value) < 1:
        raise CdpruneError(f"bad training budget '{text}'", "give dense-epochs=N with a whole N >= 1, e.g. "
                           "dense-epochs=10 (--train-budget)")
    return int(value)


def _budgeted_settings(settings: RunSettings, train_budget: str | None) -> tuple[RunSettings, int | None]:
    """The settings with the dense model's epochs set to the budget's N, and N (None without a budget)."""
    dense_epochs = parse_train_budget(train_budget)
    return (settings if dense_epochs is None else replace(settings, epochs=dense_epochs)), dense_epochs


def estimate_seconds(job: Job, runs: list[tuple[Goal, object]], probe_steps: int = 3) -> tuple[float, dict]:
    """Seconds the unfinished runs of `runs` will take here, from a short probe of training steps.

    Each model takes a few SGD steps on a random batch of the job's size; a training image
    costs one step's time per image, a test image a third of it (forward only), per epoch.
    Returns the estimate and the probed training throughputs (images/s) by run name.
    """
    settings = job.settings
    train_size = settings.train_subset or len(settings.load("train"))
    test_size = settings.test_subset or len(settings.load("test"))
    total, rates = 0.0, {}
    for goal, plan in runs:
        if (job.root / goal.name / METRICS_FILE).exists():
            continue  # reused, not trained
        model, shape = job.base_model()
        model = (apply_plan(model, plan) if plan is not None else model).to(memory_format=torch.channels_last)
        per_image = _step_seconds(model, (settings.batch_size, *shape), probe_steps)
        rates[goal.name] = 1 / per_image
        total += settings.epochs * per_image * (train_size + test_size / 3)
    return total, rates


def _step_seconds(model: torch.nn.Module, batch_shape, steps: int) -> float:
    """Seconds per image of one SGD step (forward, backward, update), after one warm-up step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(*batch_shape).to(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        # Any scalar of the output costs the same backward pass; the task's own loss is negligible beside it.
        model(x).float().square().mean().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:]) / batch_shape[0]


def _announce_estimate(job: Job, runs: list[tuple[Goal, object]]) -> None:
    seconds, rates = estimate_seconds(job, runs)
    if rates:
        probe = ", ".join(f"{name} {rate:.0f} img/s" for name, rate in rates.items())
        print(f"estimated training time on this CPU: about {max(1, round(seconds / 60))} min "
              f"(probe: {probe}; Ctrl-C keeps finished epochs, re-run to resume)", file=sys.stderr)


def _run(job: Job, goal: Goal, plan=None, label: str | None = None) -> RunMetrics:
    """One method for one seed (module level, so that Ray can ship it), announced on stderr; a budget run's
    shipped model is then checked against its budget."""
    if job.progress:
        run_dir = job.root / goal.name
        state = "finished, reused" if (run_dir / METRICS_FILE).exists() else "training"
        print(f"{label or goal.name}: {state} -> {run_dir}", file=sys.stderr)
    metrics = run_method(job, goal, plan)
    return metrics if goal.budget is None else check_shipped(job, goal, metrics)


SHIPPED_BENCH_S = 1.0  # seconds bench times a budget run's shipped file, at least 20 runs
SHIPPED_CHECK_S = 0.25  # seconds per thread count of the export's own latency check


def check_shipped(job: Job, goal: Goal, metrics: RunMetrics, bench_time_s: float = SHIPPED_BENCH_S) -> RunMetrics:
    """Export a budget run's model at the budget's precision (int8 or fp32 ONNX), time that file with bench in the
    runtime and thread count its latency was planned for, and record the plan's budget checked on it in the run's
    metrics.json (`RunMetrics.budget_check`). A run whose check was already recorded for the same precision,
    runtime and threads is returned as it is."""
    run_dir = job.root / goal.name
    plan_file = run_dir / PLAN_FILE
    plan = PruningPlan.load(plan_file) if plan_file.exists() else None
    if plan is None or not plan.budget:
        return metrics
    budget = goal.budget
    runtime, threads = shipped_runtime(plan, budget)
    done = metrics.budget_check
    if done and done.get("precision") == budget.ships and done.get("runtime") == runtime and \
            (threads is None or done.get("threads") == threads) and done.get("budget") == plan.budget:
        return metrics
    exported = export_run(run_dir, "onnx", int8=budget.ships == "int8", model=job.settings.model,
                          data_dir=job.settings.data_dir, latency_time_s=SHIPPED_CHECK_S)
    loads_files = get_runtime(runtime).load is not None  # torch runs the PyTorch model, not the file
    measured = bench(str(run_dir), runtime=runtime, threads=threads, min_time_s=bench_time_s, min_repeats=20,
                     against_dense=False, model=job.settings.model, file=exported.path if loads_files else None)
    return record_budget_check(run_dir, measured.budget)


def shipped_runtime(plan: PruningPlan, budget: Budget) -> tuple[str, int | None]:
    """Where a budget run's shipped model is timed: the runtime and threads of the latency table its plan was priced
    with; without a latency limit, the budget's runtime (default onnxruntime, which runs the ONNX file) and bench's
    default threads."""
    if plan.latency:
        return plan.latency["runtime"], plan.latency["threads"]
    return budget.runtime or "onnxruntime", None


def write_comparison(out: Path, runs: list[RunMetrics], settings: RunSettings, plot: bool = True,
                     planner: PlannerConfig | None = None, budget: Budget | None = None) -> None:
    """summary.json, report.md and comparison.png for runs whose first entry is the dense baseline."""
    extra = {} if planner is None else {"planner": planner.to_dict()}
    extra.update({} if budget is None else {"budget": budget.to_dict()})
    atomic_write_json(out / "summary.json", {"settings": asdict(settings), **extra,
                                             "runs": [r.to_dict() for r in runs]})
    text = comparison_markdown(runs, settings)
    if plot:
        from .plots import comparison_chart  # matplotlib takes a second to import: only when drawing

        comparison_chart(runs, out / "comparison.png")
        text += "\n![dense vs pruned](comparison.png)\n"
    atomic_write_text(out / "report.md", text)


# ---- compare: methods side by side, over seeds -------------------------------------------------

@dataclass(frozen=True)
class MethodSummary(Record):
    """One method over its seeds: the task's score mean ± std (`score_name`: accuracy as a fraction, or PSNR
    in dB), the means of its extra scores (`ssim_mean`), resources and training cost (means). `acc_mean`
    and `acc_std` repeat the score for classify and are None for the other tasks."""

    method: str
    seeds: int
    acc_mean: float | None
    acc_std: float | None
    params: float
    flops: float
    memory_bytes: float
    reduction: dict
    latency_ms: float
    energy_mj: float
    train_time_s: float  # every stage of the method: dense pre-training and fine-tuning included
    train_flops: float  # MACs, every stage
    score_name: str = "accuracy"
    score_mean: float = 0.0
    score_std: float = 0.0
    ssim_mean: float | None = None
    planner: dict | None = None  # step, floor, round_to of the method's plans (None: dense, no plan)
    budget_checks: list | None = None  # a budget compare: each seed's check of its shipped model (None: dense)
    # Seeds whose run is flagged not converged, and the largest last-epoch rise of the score over the seeds
    # (None: no seed could be checked, one-epoch runs or records from before the check).
    not_converged: int = 0
    last_epoch_gain_max: float | None = None
    epochs: float = 0.0  # of the method's last stage (the fine-tune of a ranking method), mean over seeds
    pretrain_epochs: float = 0.0  # of its earlier stages (a ranking method's dense training)

    @classmethod
    def of(cls, method: str, runs: list[RunMetrics]) -> "MethodSummary":
        score = np.array([r.score for r in runs])
        mean = lambda attr: float(np.mean([getattr(r, attr) for r in runs]))
        score_mean, score_std = float(score.mean()), float(score.std(ddof=1)) if len(score) > 1 else 0.0
        task = task_registry.create(runs[0].task)
        return cls(method=method, seeds=len(runs), acc_mean=task.accuracy(score_mean),
                   acc_std=task.accuracy(score_std), score_name=runs[0].score_name, score_mean=score_mean,
                   score_std=score_std, **{f"{s.key}_mean": mean(s.key) for s in task.extra_scores},
                   params=mean("params"), flops=mean("flops"), memory_bytes=mean("memory_bytes"),
                   reduction={m: float(np.mean([r.reduction[m] for r in runs])) for m in runs[0].reduction},
                   latency_ms=mean("latency_ms"), energy_mj=mean("energy_mj"),
                   train_time_s=mean("total_train_time_s"), train_flops=mean("total_train_flops"),
                   planner=_planner_of(runs[0]), epochs=mean("epochs"),
                   pretrain_epochs=mean("pretrain_epochs"), not_converged=sum(r.converged is False for r in runs),
                   last_epoch_gain_max=max(gains) if (gains := [r.last_epoch_gain for r in runs
                                                                 if r.last_epoch_gain is not None]) else None,
                   budget_checks=[r.budget_check for r in runs] if runs[0].budget_check else None)


def _planner_of(run: RunMetrics) -> dict | None:
    """The planner settings a run's plan recorded (None for dense; absent values in runs from before they were)."""
    if not run.plan:
        return None
    return {key: run.plan.get(key) for key in PlannerConfig().to_dict()}


@dataclass(frozen=True)
class CompareResult(Record):
    """Every method at one target (or within one budget): one summary per method, over seeds; `planner` is what
    every method planned with."""

    out: str
    target: float | None
    metric: str | None
    seeds: int
    epochs: int
    summaries: list[MethodSummary]
    planner: dict = field(default_factory=dict)
    budget: dict | None = None  # methods.Budget.to_dict() of a budget compare
    train_budget: dict | None = None  # {"dense_epochs": N} when every method got N dense epochs' training FLOPs


# compare.csv's columns around the task's scores: <score key>_mean, _std, then each extra score's _mean
# (acc_mean, acc_std for classify; psnr_mean, psnr_std, ssim_mean for denoise and sr).
COMPARE_CSV_FIELDS = ["method", "seeds", "params", "flops", "memory_bytes", "params_reduction",
                      "flops_reduction", "memory_reduction", "latency_ms", "energy_mj", "train_time_s", "train_flops",
                      "not_converged", "last_epoch_gain_max", "epochs", "pretrain_epochs"]


def compare(out: str | Path, settings: RunSettings, methods: list[str], target: float | None, *,
            metric: str | None = "flops", seeds: int = 1, planner: PlannerConfig = PlannerConfig(),
            download: bool = False, progress: bool = True, backend: str = "local",
            resources: Resources = Resources(), budget: Budget | None = None,
            train_budget: str | None = None) -> CompareResult:
    """Train every method for every seed (seed, seed+1, …) to the same `target` reduction of `metric`, or within
    the same `budget` (target None; metric is then ignored).

    train_budget: "dense-epochs=N": every method gets the training FLOPs of N epochs of the dense model
    instead of `settings.epochs` (docs/design.md, "Training budget").

    Every method, the modes and the baselines alike, plans with the same `planner` settings (step, floor,
    round_to), which compare.json records with the table. With a budget, every pruned method plans to its limits
    (the baselines take the smallest common fraction, or the shortest ranking, that meets them) and each
    trained model is exported at the budget's precision and checked against them (`check_shipped`); dense is
    the reference.

    Finished runs are reused, so re-running only trains what is missing. Writes compare.md,
    compare.csv and compare.json into `out`. backend="ray" trains the runs as Ray tasks; `out`
    must then be on storage that every node of the cluster sees.
    """
    metric = metric if budget is None else None
    check_goal(Goal("fa", target, metric, budget=budget))  # checked whatever the methods, dense alone too
    for m in methods:
        check_goal(Goal(m, None if m == "dense" else target, metric, planner=planner, budget=budget))
    if seeds < 1:
        raise CdpruneError(f"seeds {seeds} must be at least 1 (--seeds)")
    settings, dense_epochs = _budgeted_settings(settings, train_budget)
    if budget is not None:
        budget = _checked(budget, Job(Path(out), settings))
    # The folder holds one target or budget, so runs are named by their method alone.
    goals = [Goal(m, None if m == "dense" else target, metric, name=run_name(m), planner=planner,
                  budget=None if m == "dense" else budget) for m in methods]
    out = Path(out)
    local = backend == "local"
    tasks = []
    for k in range(seeds):
        job = Job(out / f"seed-{settings.seed + k}", replace(settings, seed=settings.seed + k), progress and local,
                  download, dense_epochs)
        dense = _task_name("dense", job.settings.seed)
        ranking = any(get_method(g.method).needs_dense for g in goals)
        # Ranking methods start from the seed's dense run: train it once, before them. Under a training budget
        # their dense stage may be a shorter run of its own, which they train themselves, one after another.
        if ranking and "dense" not in methods and dense_epochs is None:
            tasks.append(Task(dense, _run, (job, Goal("dense"), None, dense)))
        waits = dense if "dense" in methods or dense_epochs is None else None
        for goal in goals:
            name = _task_name(goal.method, job.settings.seed)
            needs_dense = get_method(goal.method).needs_dense
            tasks.append(Task(name, _run, (job, goal, None, name), after=waits if needs_dense else None))
            if needs_dense and dense_epochs is not None:
                waits = name
    outcome = run_tasks(tasks, backend, resources, progress)
    runs = {g.method: [outcome.results[name] for k in range(seeds)
                       if (name := _task_name(g.method, settings.seed + k)) in outcome.results] for g in goals}
    runs = {name: rs for name, rs in runs.items() if rs}  # a method whose every seed failed has no row
    result = CompareResult(str(out), target, metric, seeds, settings.epochs,
                           [MethodSummary.of(name, rs) for name, rs in runs.items()], planner.to_dict(),
                           None if budget is None else budget.to_dict(),
                           None if dense_epochs is None else {"dense_epochs": dense_epochs})
    if result.summaries:
        _write_compare(out, result, runs, settings)
    outcome.raise_failures()
    return result


def _task_name(method: str, seed: int) -> str:
    return f"{method} (seed {seed})"


def _write_compare(out: Path, result: CompareResult, runs: dict[str, list[RunMetrics]], settings: RunSettings) -> None:
    atomic_write_json(out / "compare.json", {
        "settings": asdict(settings), "target": result.target, "metric": result.metric, "planner": result.planner,
        "budget": result.budget,
        "train_budget": result.train_budget,
        "summaries": [s.to_dict() for s in result.summaries],
        "runs": {name: [r.to_dict() for r in rs] for name, rs in runs.items()}})
    task = settings.make_task()
    extras = [f"{s.key}_mean" for s in task.extra_scores]
    scores = [f"{task.score.key}_mean", f"{task.score.key}_std", *extras]
    fields = COMPARE_CSV_FIELDS[:2] + scores + COMPARE_CSV_FIELDS[2:]
    rows = [[s.method, s.seeds, s.score_mean, s.score_std, *(getattr(s, e) for e in extras),
             s.params, s.flops, s.memory_bytes, s.reduction["params"],
             s.reduction["flops"], s.reduction["memory"], s.latency_ms, s.energy_mj, s.train_time_s, s.train_flops,
             s.not_converged, s.last_epoch_gain_max, s.epochs, s.pretrain_epochs]
            for s in result.summaries]
    atomic_write_text(out / "compare.csv", csv_text(fields, rows))
    first = next(iter(runs.values()))[0]
    atomic_write_text(out / "compare.md", compare_markdown(result, settings, first.train_size, first.test_size))


# ---- sweep: the trade-off curves ---------------------------------------------------------------

@dataclass(frozen=True)
class SweepPoint(Record):
    """One point of the trade-off curves: a mode at a target (or dense), trained and measured on this device."""

    method: str  # the run's name
    mode: str
    target: float | None
    status: str  # "ok", or "unreachable": the mode cannot remove that much (nothing trained)
    test_acc: float | None = None  # tasks whose score is an accuracy (classify)
    params: int | None = None
    flops: int | None = None
    memory_bytes: int | None = None
    latency_ms: float | None = None  # median, batch 1, measured in a fresh process
    latency_p90_ms: float | None = None
    latency_noisy: bool | None = None  # the timing protocol's flag (measure/timing.py)
    energy_mj: float | None = None  # per inference, estimated (the run's record: the same wherever it is measured)
    energy_measured_mj: float | None = None  # per inference, where a meter answered during the latency measurement
    cpu_percent: float | None = None  # process CPU time ÷ wall time in the timed loop, in % of one core
    cpu_ms: float | None = None  # process CPU time (all threads) per inference
    energy_kind: str | None = None  # "estimated" or "measured"
    train_time_s: float | None = None
    score_name: str = "accuracy"  # the task's headline: "accuracy" or "PSNR" (dB)
    score: float | None = None
    ssim: float | None = None  # denoise and sr
    budget: str | None = None  # a budget sweep's point: the budget as written ("latency=1ms")
    budget_check: dict | None = None  # its shipped model checked against it (deploy.budget.BudgetCheck)
    last_epoch_gain: float | None = None  # the run's convergence check (RunMetrics)
    converged: bool | None = None


@dataclass(frozen=True)
class SweepResult(Record):
    out: str
    title: str
    points: list[SweepPoint]
    budgets: list[dict] | None = None  # a budget sweep: methods.Budget.to_dict() of each budget, in order


# sweep.csv's columns around the task's scores: test_<score key>, then test_<key> of each extra score
# (test_acc for classify; test_psnr, test_ssim for denoise and sr).
SWEEP_CSV_FIELDS = ["method", "mode", "target", "params", "flops", "memory_bytes", "latency_ms", "energy_mj",
                    "energy_kind", "energy_measured_mj", "cpu_percent", "cpu_ms", "train_time_s", "status", "converged",
                    "last_epoch_gain"]


def sweep(out: str | Path, settings: RunSettings, modes: list[str], targets: list[float] | None, *,
          planner: PlannerConfig = PlannerConfig(), download: bool = False, progress: bool = True,
          bench_time_s: float = 1.0, backend: str = "local", resources: Resources = Resources(),
          fps: float = 10.0, budgets: list[Budget] | None = None,
          train_budget: str | None = None) -> SweepResult:
    """Dense plus every mode × target (each mode reduces its own metric), measured on this device.

    Writes sweep.csv, sweep.json and the trade-off charts tradeoff_resources.png (accuracy
    against params, FLOPs, memory) and tradeoff_device.png (against latency, energy, and the
    share of one CPU core the model takes at `fps` inferences per second).
    Targets a mode cannot reach are recorded with status 'unreachable', not trained.
    budgets: instead of targets (not both), one run per mode per budget, each checked on its shipped model
        (`check_shipped`); also writes budgets.csv (the budget table) and tradeoff_budget.png (the score
        against the first metric of the budgets, which every budget must limit).
    backend="ray" trains and measures each point as a Ray task, on the node that runs it.
    train_budget: "dense-epochs=N": each point gets the training FLOPs of N dense epochs.
    """
    settings, dense_epochs = _budgeted_settings(settings, train_budget)
    for m in modes:
        get_mode(m)
    out = Path(out)
    job = Job(out, settings, progress and backend == "local", download, dense_epochs)
    # Every goal is checked before the first training, so a bad target or budget costs nothing.
    if budgets:
        if targets:
            raise CdpruneError("a sweep runs over targets (--targets) or budgets (--budgets), not both", "give one")
        check_budgets(budgets)
        budgets = [_checked(b, job) for b in budgets]
        goals = [Goal("dense")] + [check_goal(Goal(m, planner=planner, budget=b, name=f"{m}-{b.slug}"))
                                   for m in modes for b in budgets]
    else:
        goals = [Goal("dense")] + [check_goal(Goal(m, t, planner=planner)) for m in modes for t in targets or []]
    tasks = [Task(g.name, _sweep_point, (job, g, bench_time_s)) for g in goals]
    outcome = run_tasks(tasks, backend, resources, progress)
    task = settings.make_task()
    title = f"{settings.model} on {settings.data}" + (f", {task.name}" if task.named_in_titles else "")
    result = SweepResult(str(out), title, [outcome.results[t.name] for t in tasks if t.name in outcome.results],
                         [b.to_dict() for b in budgets] if budgets else None)
    atomic_write_json(out / "sweep.json", {"settings": asdict(settings), "planner": planner.to_dict(),
                                           **({"budgets": result.budgets} if budgets else {}),
                                           "train_budget": None if dense_epochs is None else {"dense_epochs": dense_epochs},
                                           "points": [p.to_dict() for p in result.points]})
    values = {f"test_{task.score.key}": "score", **{f"test_{s.key}": s.key for s in task.extra_scores}}
    fields = SWEEP_CSV_FIELDS[:3] + list(values) + SWEEP_CSV_FIELDS[3:]
    rows = [[getattr(p, values.get(f, f)) for f in fields] for p in result.points]
    atomic_write_text(out / "sweep.csv", csv_text(fields, rows))
    if budgets:
        atomic_write_text(out / "budgets.csv", csv_text(BUDGET_CSV_FIELDS, budget_csv_rows(result.points)))
    from .plots import budget_chart, tradeoff_charts  # matplotlib takes a second to import: only when drawing

    trained = [p for p in result.points if p.status == "ok"]
    first = trained and read_metrics(out / trained[0].method)
    epochs = f"{settings.epochs} epoch{'s' if settings.epochs != 1 else ''}"
    budget = f"{epochs} on {first.train_size} images, tested on {first.test_size}" if first else ""
    subtitle = f"{budget} · {cpu_description()}, {torch.get_num_threads()} threads · {date.today().isoformat()}"
    tradeoff_charts(trained, out, result.title, subtitle, fps=fps)
    if budgets:
        budget_chart(trained, next(iter(budgets[0].limits)), out / "tradeoff_budget.png", result.title, subtitle)
    outcome.raise_failures()
    return result


BUDGET_CSV_FIELDS = ["method", "mode", "budget", "metric", "limit", "planned", "measured", "measured_p90", "passed",
                     "precision", "runtime", "threads"]


def budget_csv_rows(points: list[SweepPoint]) -> list[list]:
    """budgets.csv: one row per limit of each point's budget, as its check recorded it."""
    return [[p.method, p.mode, p.budget, row["metric"], row["limit"], row["planned"], row["measured"],
             row["measured_p90"], row["passed"], p.budget_check["precision"], p.budget_check["runtime"],
             p.budget_check["threads"]]
            for p in points if p.budget_check for row in p.budget_check["rows"]]


def check_budgets(budgets: list[Budget]) -> None:
    """The budgets of one sweep share the chart's axis: every budget limits the first budget's first metric."""
    axis = next(iter(budgets[0].limits))
    for b in budgets:
        if axis not in b.limits:
            raise CdpruneError(f"budget '{b.text}' sets no {axis} limit, the axis of the sweep's budget chart",
                               f"give every budget of --budgets a {axis} limit")
    slugs = [b.slug for b in budgets]
    if len(set(slugs)) != len(slugs):
        raise CdpruneError("--budgets names one budget twice", "give each budget once")


def _sweep_point(job: Job, goal: Goal, bench_time_s: float) -> SweepPoint:
    """Train (or reuse) one point of the sweep and measure it: one row of sweep.csv."""
    budget = goal.budget.text if goal.budget is not None else None
    try:
        metrics = _run(job, goal)
    except UnreachableTarget:
        return SweepPoint(goal.name, goal.method, goal.target, "unreachable", budget=budget)
    # Each point is plotted against the sweep's own dense run, so no second dense timing per point.
    measured = bench(str(job.root / goal.name), min_time_s=bench_time_s, min_repeats=20, against_dense=False,
                     model=job.settings.model)  # the user named the model for this sweep
    return SweepPoint(goal.name, goal.method, goal.target, "ok", test_acc=metrics.test_acc, params=metrics.params,
                      flops=metrics.flops, memory_bytes=metrics.memory_bytes, latency_ms=measured.p50_ms,
                      latency_p90_ms=measured.p90_ms, latency_noisy=measured.noisy, energy_mj=metrics.energy_mj, cpu_percent=measured.cpu_percent,
                      cpu_ms=measured.cpu_ms_per_input, energy_kind=metrics.energy.get("kind"),
                      energy_measured_mj=measured.energy_mj if measured.energy["kind"] == "measured" else None,
                      train_time_s=metrics.train_time_s, score_name=metrics.score_name, score=metrics.score,
                      ssim=metrics.ssim, budget=budget, budget_check=metrics.budget_check,
                      last_epoch_gain=metrics.last_epoch_gain, converged=metrics.converged)
