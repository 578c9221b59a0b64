"""Pruning methods behind one interface: each trains one run directory for one seed.

The complexity-driven modes and the baselines they are compared against are registered
here, and `run`, `compare` and `sweep` all train through `run_method`. A `Job` says where
and how (folder, data, training settings, device); a `Goal` says what (method, target,
metric, and the planner's settings, which every method plans with alike). Adding a method is
one `register_method` call with the function that plans it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch.nn as nn

from . import models, registry
from .complexity import profile
from .errors import CdpruneError
from .measure.energy import energy_model_of
from .measure.latency import cpu_model_name
from .measure.layer_latency import LatencyTable, latency_table
from .measure.runtimes import deployed_onnx, get_runtime
from .metrics import ENERGY_MODEL, LATENCY_TABLE, get_metric, metric_names
from .pruning import MODES, PruningPlan, apply_plan, make_plan
from .pruning.baselines import half_width_copy, l1_plan, magnitude_plan, uniform_plan
from .pruning.sampler import MAX_MARGIN, MIN_MARGIN, PlannerConfig, budget_limits, check_margin
from .pruning.units import find_units
from .runs import RunMetrics, RunSettings, load_run, run_name, train_run

FINETUNE_EPOCH_FRACTION = 0.5  # fine-tuning after ranking gets half the epochs…
FINETUNE_LR_FACTOR = 0.1  # …at a tenth of the learning rate (Li et al. 2017 fine-tune at a low rate)


@dataclass(frozen=True)
class Job:
    """Where and how: the folder a seed's runs go to, and what they train on with which settings."""

    root: Path
    settings: RunSettings  # model, data, training budget, device
    progress: bool = True
    download: bool = False
    dense_epochs: int | None = None  # a training budget: the FLOPs of this many dense epochs for every method

    def budgeted(self, dense_flops: int, flops: int) -> RunSettings:
        """The job's settings, with the epochs a model of `flops` MACs per image gets under the budget."""
        if self.dense_epochs is None:
            return self.settings
        return replace(self.settings, epochs=budget_epochs(self.dense_epochs, dense_flops, flops))

    def base_model(self) -> tuple[nn.Module, tuple[int, ...]]:
        info = self.settings.dataset_info()
        model = models.create(self.settings.model, info.num_classes, info.input_shape[0], self.settings.model_args)
        return model, info.input_shape

    def train(self, goal: "Goal", plan: PruningPlan | None, settings: RunSettings | None = None,
              init_from: Path | None = None) -> RunMetrics:
        """Train (or reuse, or resume) the run `goal.name` under `root`; `settings` overrides the job's."""
        return train_run(self.root / goal.name, settings or self.settings, plan, resume=True, download=self.download,
                         progress=self.progress, method=goal.name, init_from=init_from)


PRECISIONS = ("fp32", "int8")  # what a budget run ships: an fp32 or a static int8 ONNX file
# A latency limit is planned to limit × (1 − margin): on the 2-core machine of benchmarks/device_budget.py the same
# file measured up to 14 % slower minutes apart (docs/design.md, "Margin").
DEFAULT_MARGIN = 0.05
FIT_TRIES = 4  # plans timed before training: the first, and up to three made again
FIT_TIME_S = 1.0  # seconds each is timed, as the shipped file is timed after training
FIT_TOLERANCE = 0.05  # a file up to this fraction under its aim is kept: the planner's steps are about this coarse
FIT_NUDGE, FIT_NUDGES = 0.01, 5  # how far the margin moves on when a correction gives the same channels back


@dataclass(frozen=True)
class Budget:
    """Upper limits that every method's plan meets (`limits`, as make_plan takes them), what prices latency
    (a latency table, the runtime it estimates), and the precision the model ships at, in which the trained
    model is exported and measured against the limits (docs/design.md, "Budgets in run, compare and sweep").

    `text` is the budget as the user wrote it ("latency=1ms,flops=100M"); `slug` names folders by it.
    """

    limits: dict
    text: str = ""
    table: LatencyTable | None = None
    runtime: str | None = None  # latency_runtime of make_plan; also the runtime the shipped file is measured in
    precision: str | None = None  # None: fp32, and make_plan is not asked to check the table's precision
    margin: float | None = None  # of a latency limit, kept free when planning; None: DEFAULT_MARGIN with a latency limit
    fit: bool = True  # time each plan on this machine before training, where its table was timed here (`fit_plan`)
    # (ONNX bytes, input shape, threads, seconds) -> (p50, p90) ms: how fit_plan times a plan's file. None: in this
    # process; run, compare and sweep time it as bench times the shipped file (deploy.bench.file_latency).
    timer: Callable | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "limits", budget_limits(self.limits))
        object.__setattr__(self, "margin", latency_margin(self.margin, self.limits))
        if not self.text:
            object.__setattr__(self, "text", ",".join(f"{m}={get_metric(m).limit(v)}" for m, v in self.limits.items()))
        if self.precision is not None and self.precision not in PRECISIONS:
            raise CdpruneError(f"unknown precision '{self.precision}'", f"choose {' or '.join(PRECISIONS)} (--precision)")
        if self.precision == "int8" and self.runtime is None and self.table is None:
            object.__setattr__(self, "runtime", "onnxruntime")  # the runtime that runs int8 files

    @property
    def ships(self) -> str:
        return self.precision or "fp32"

    @property
    def timed(self) -> bool:
        """Whether a limit is priced by a latency table."""
        return any(get_metric(m).priced_by == LATENCY_TABLE for m in self.limits)

    @property
    def slug(self) -> str:
        """'latency1ms+flops100M': the budget in a folder name."""
        return self.text.replace("=", "").replace(",", "+").replace(" ", "").replace("/", "-")

    def check(self, model: nn.Module, input_shape) -> "Budget":
        """Refuse, before anything is trained or written, a budget that no plan could be made for: a latency
        table or runtime without a latency limit, a table for another model, input or runtime, a table of
        another precision, int8 measured in torch."""
        if self.ships == "int8" and self.runtime == "torch":
            raise CdpruneError("int8 models run in ONNX Runtime, not torch", "use --runtime onnxruntime with "
                               "--precision int8")
        if not self.timed:
            if self.table is not None:
                raise CdpruneError("a latency table (--latency-table) serves latency limits only",
                                   "add latency=... to --budget, or drop the table")
            return self
        if self.table is None:  # this machine's table, built in the shipped precision
            return self
        channels = find_units(model, profile(model, tuple(input_shape)))
        self.table.check_fits(model, tuple(input_shape), self.runtime, (m.name for m in channels.layers()), self.ships)
        return self

    def latency_model(self, model: nn.Module, input_shape):
        """The latency table the limits are priced with: the given one, else this machine's (cached)."""
        if not self.timed:
            return None
        return self.table or latency_table(model, input_shape, runtime=self.runtime or "torch", precision=self.ships,
                                           calibration=lambda: half_width_copy(model, input_shape))

    def plan_options(self, margin: float | None = None) -> dict:
        """make_plan's keywords for this budget (with another latency margin than its own, when given)."""
        options = {"budget": self.limits, "margin": self.margin if margin is None else margin}
        if self.timed:
            options.update(latency_table=self.table, latency_runtime=self.runtime)
            if self.precision is not None:
                options["latency_precision"] = self.precision
        return options

    def to_dict(self) -> dict:
        return {"limits": self.limits, "text": self.text, "precision": self.ships, "runtime": self.runtime,
                "latency_table": None if self.table is None else (self.table.source or "given"),
                "margin": self.margin, "fit": self.fit}


def latency_margin(margin: float | None, limits: dict) -> float:
    """The margin a budget plans with: `margin` checked, else DEFAULT_MARGIN with a latency limit and 0 without."""
    if margin is None:
        margin = DEFAULT_MARGIN if "latency" in limits else 0.0
    return check_margin(margin, limits)


def fit_plan(budget: Budget, model: nn.Module, input_shape, plan_with: Callable[[float], PruningPlan]) -> PruningPlan:
    """The plan `plan_with(margin)` makes for `budget`, fitted to this machine before any training.

    Where the plan's latency was priced by an ONNX Runtime table timed on this CPU, the pruned model is exported
    as it ships (fp32 or int8) and timed (untrained: a latency does not depend on the weights). The aim is the
    limit less the budget's margin. A file above the aim, or more than FIT_TOLERANCE below it (capacity given away),
    has its plan made again with the estimate it planned to scaled by aim / measured, at most FIT_TRIES plans in
    all. Of those timed, the slowest at or under the aim is kept (else the fastest), with what was measured in
    `latency["fitted"]`. Elsewhere (a table from a board, the torch runtime, no latency limit) the plan is returned
    as made (docs/design.md, "Fit")."""
    plan = plan_with(budget.margin)
    if not (budget.fit and "latency" in budget.limits and plan.latency.get("runtime") == "onnxruntime"
            and plan.latency.get("cpu_model") == cpu_model_name()):
        return plan
    limit, margin = budget.limits["latency"], budget.margin
    aim = limit * (1 - margin)
    timed = []  # (p50, p90, margin the plan was made with, plan)
    for _ in range(FIT_TRIES):
        pruned = apply_plan(copy.deepcopy(model), plan)
        data = deployed_onnx(pruned, tuple(input_shape), plan.latency["precision"])
        p50, p90 = (budget.timer or _in_process)(data, tuple(input_shape), plan.latency["threads"], FIT_TIME_S)
        timed.append((p50, p90, margin, plan))
        if aim * (1 - FIT_TOLERANCE) <= p50 <= aim or len(timed) == FIT_TRIES:
            break
        again = _replanned(plan, margin, aim / p50, plan_with)
        if again is None:
            break
        plan, margin = again
    fitting = [t for t in timed if t[0] <= aim]
    p50, p90, margin, plan = max(fitting, key=lambda t: t[0]) if fitting else min(timed, key=lambda t: t[0])
    fitted = {"p50_ms": round(p50, 4), "p90_ms": round(p90, 4), "aim_ms": round(aim, 4), "margin": round(margin, 4),
              "plans": len(timed)}
    return replace(plan, latency={**plan.latency, "fitted": fitted})


def _in_process(data: bytes, input_shape, threads: int, min_time_s: float) -> tuple[float, float]:
    stats = get_runtime("onnxruntime").latency(data, input_shape, threads=threads, min_time_s=min_time_s)
    return stats.p50_ms, stats.p90_ms


def _replanned(plan: PruningPlan, margin: float, ratio: float, plan_with) -> tuple[PruningPlan, float] | None:
    """(a plan made again with the estimate it planned to scaled by `ratio` = aim / measured, its margin), the
    planner's estimate scaling about as the file's time does. A small correction can give the same channels back:
    then the margin moves on by FIT_NUDGE at a time, at most FIT_NUDGES times. None: no other plan in reach."""
    wanted, highest = 1 - (1 - margin) * ratio, MAX_MARGIN - FIT_NUDGE
    direction = 1 if ratio < 1 else -1  # tighter when the file was too slow
    for nudge in range(FIT_NUDGES + 1):
        candidate = min(max(wanted + direction * nudge * FIT_NUDGE, MIN_MARGIN), highest)
        try:
            again = plan_with(candidate)
        except CdpruneError:  # the floor allows no tighter plan
            return None
        if again.units != plan.units:
            return again, candidate
        if candidate in (MIN_MARGIN, highest):
            return None
    return None


@dataclass(frozen=True)
class Goal:
    """What to reach: a method, the fraction `target` of `metric` to remove (None: the mode's own metric), or a
    `budget` instead, with the planner's step, floor and rounding (`planner`), which every method plans with,
    the modes and the baselines alike.

    `name` is the run's folder and label; by default `run_name(method, target)` (`<method>-budget` with a budget).
    """

    method: str
    target: float | None = None
    metric: str | None = None
    name: str = field(default="")
    planner: PlannerConfig = PlannerConfig()
    budget: Budget | None = None

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", run_name(self.method, self.target, budget=self.budget is not None))


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    plan: Callable[[Job, Goal], PruningPlan | None] | None  # from-scratch methods: the plan, made before training
    rank: Callable[..., PruningPlan] | None = None  # train → rank → prune → fine-tune: plan from trained weights

    @property
    def needs_dense(self) -> bool:
        """Starts from the seed's trained dense model, so that run must finish first."""
        return self.rank is not None


METHODS: dict[str, Method] = {}


def register_method(m: Method) -> Method:
    return registry.add(METHODS, m.name, m, "method")


def get_method(name: str) -> Method:
    return registry.get(METHODS, name, "method", option="methods")


def check_goal(goal: Goal) -> Goal:
    """Refuse a goal that cannot be trained (unknown method, target outside (0, 1), unknown metric) before any work."""
    get_method(goal.method)
    if goal.method == "dense":
        return goal
    if goal.budget is not None:
        if goal.target is not None or goal.metric is not None:
            raise CdpruneError("a budget (--budget) and a target (--target, --metric) both say how far to prune",
                               "give one of them")
        return goal
    if goal.target is None or not 0 < goal.target < 1:  # NaN fails this test too
        raise CdpruneError(f"target {goal.target} is outside (0, 1)", "give the fraction to remove, e.g. target 0.5 "
                           "(--target, --targets)")
    if goal.metric is not None and not get_metric(goal.metric).sized and goal.method not in MODES:
        sized = metric_names(lambda m: m.sized)
        raise CdpruneError(f"method {goal.method} cannot aim at {goal.metric}", f"use a metric of {', '.join(sized)}")
    return goal


def plan_goal(job: Job, goal: Goal) -> PruningPlan | None:
    """The plan a from-scratch method trains (None for dense); ranking methods plan only after training."""
    method = get_method(check_goal(goal).method)
    return method.plan(job, goal) if method.plan is not None else None


def run_method(job: Job, goal: Goal, plan: PruningPlan | None = None) -> RunMetrics:
    """Train one method for one seed into `job.root / goal.name`; finished runs are reused.

    plan: a plan already made for this goal by `plan_goal` (the main job plans before training
        anything, so that an unreachable target fails at once).
    """
    method = get_method(check_goal(goal).method)
    if method.needs_dense:
        return _ranked(job, goal, method)
    plan = plan if plan is not None else plan_goal(job, goal)
    settings = None
    if job.dense_epochs is not None:
        dense_flops = plan.before.flops if plan is not None else _dense_flops(job)
        settings = job.budgeted(dense_flops, plan.after.flops if plan is not None else dense_flops)
    return job.train(goal, plan, settings=settings)


def budget_epochs(dense_epochs: int, dense_flops: int, flops: int) -> int:
    """Epochs of a model of `flops` MACs per image that cost at most what `dense_epochs` epochs of the dense
    model (`dense_flops`) cost: ⌊N·F_dense / F⌋, at least 1. Training FLOPs per image are 3 × the forward MACs
    for every model, so the factor cancels (docs/design.md, "Training budget")."""
    return max(1, dense_epochs * dense_flops // flops)


def _dense_flops(job: Job) -> int:
    model, shape = job.base_model()
    return profile(model, shape).totals.flops


def _planned(goal: Goal, model: nn.Module, shape, plan_with: Callable[[float | None], PruningPlan]) -> PruningPlan:
    """The plan of `plan_with(margin)`: fitted on this machine under a budget (`fit_plan`), else as made."""
    return plan_with(None) if goal.budget is None else fit_plan(goal.budget, model, shape, plan_with)


def _ranked(job: Job, goal: Goal, method: Method) -> RunMetrics:
    # The fine-tune starts from this seed's dense run, whatever --init started that run from.
    settings = replace(job.settings, init=None, init_digest=None, keep=None)
    dense_goal, dense_epochs = Goal("dense"), job.settings.epochs
    if job.dense_epochs is not None:
        dense_epochs = _ranked_dense_epochs(job, goal, method)
        if dense_epochs != job.dense_epochs:  # a dense stage of its own, shorter than the dense method's run
            dense_goal = Goal("dense", name=f"{run_name('dense')}-{dense_epochs}ep")
    dense_dir = job.root / dense_goal.name
    job.train(dense_goal, None, settings=replace(job.settings, epochs=dense_epochs))  # reused when finished
    trained, _ = load_run(dense_dir, job.settings.model)  # the user named the model for this job
    shape = job.settings.dataset_info().input_shape
    plan = _planned(goal, trained, shape, lambda margin: method.rank(
        trained, shape, goal.target, goal.metric or "flops", floor=goal.planner.floor, round_to=goal.planner.round_to,
        step=goal.planner.step, **_baseline_budget(goal, trained, shape, margin)))
    if job.dense_epochs is None:
        epochs = max(1, math.ceil(job.settings.epochs * FINETUNE_EPOCH_FRACTION))
    else:  # the fine-tune gets what the dense stage left of the budget
        epochs = max(1, (job.dense_epochs - dense_epochs) * plan.before.flops // plan.after.flops)
    finetune = replace(settings, epochs=epochs, lr=job.settings.lr * FINETUNE_LR_FACTOR)
    return job.train(goal, plan, settings=finetune, init_from=dense_dir)


def _ranked_dense_epochs(job: Job, goal: Goal, method: Method) -> int:
    """The dense stage's epochs under the budget: the most E with E dense epochs plus ⌈E/2⌉ fine-tuning epochs
    within N dense epochs' FLOPs, the pruned model's FLOPs taken from the plan the method makes of fresh weights
    (exactly the trained plan's for l1, whose per-unit counts do not depend on the weights)."""
    model, shape = job.base_model()
    fresh = method.rank(model, shape, goal.target, goal.metric or "flops", floor=goal.planner.floor,
                        round_to=goal.planner.round_to, step=goal.planner.step)
    dense, pruned, budget = fresh.before.flops, fresh.after.flops, job.dense_epochs * fresh.before.flops
    epochs = 1
    while (epochs + 1) * dense + math.ceil((epochs + 1) * FINETUNE_EPOCH_FRACTION) * pruned <= budget:
        epochs += 1
    return epochs


register_method(Method("dense", "unpruned model, trained from scratch", plan=lambda job, goal: None))


def _baseline_budget(goal: Goal, model: nn.Module, shape, margin: float | None = None) -> dict:
    """The budget keywords of a baseline: the limits, the latency margin (the budget's own unless given) and the
    models that price them, as make_plan would."""
    if goal.budget is None:
        return {}
    priced = {get_metric(m).priced_by for m in goal.budget.limits}
    return {"budget": goal.budget.limits, "margin": goal.budget.margin if margin is None else margin,
            "latency": goal.budget.latency_model(model, shape),
            "energy": energy_model_of(None) if ENERGY_MODEL in priced else None}


def _sampled(mode: str):
    def plan(job: Job, goal: Goal) -> PruningPlan:
        model, shape = job.base_model()
        if goal.budget is not None:
            return fit_plan(goal.budget, model, shape, lambda margin: make_plan(
                model, shape, mode, None, seed=job.settings.seed, **goal.planner.to_dict(),
                **goal.budget.plan_options(margin)))
        return make_plan(model, shape, mode, goal.target, target_metric=goal.metric, seed=job.settings.seed,
                         **goal.planner.to_dict())
    return plan


for _mode in MODES.values():
    register_method(Method(_mode.name, f"{_mode.title}, trained from scratch", plan=_sampled(_mode.name)))


def _uniform(job: Job, goal: Goal) -> PruningPlan:
    model, shape = job.base_model()
    return _planned(goal, model, shape, lambda margin: uniform_plan(
        model, shape, goal.target, goal.metric or "flops", seed=job.settings.seed, **goal.planner.to_dict(),
        **_baseline_budget(goal, model, shape, margin)))


register_method(Method("uniform", "same fraction of every unit at random, trained from scratch", plan=_uniform))
register_method(Method("l1", "Li et al. 2017: train, prune smallest-L1 filters per layer, fine-tune", plan=None,
                       rank=l1_plan))
register_method(Method("tp-magnitude", "torch-pruning group magnitude, global ranking, then fine-tune", plan=None,
                       rank=magnitude_plan))
