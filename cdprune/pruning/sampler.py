"""Which channels go: complexity-weighted random sampling (the paper's algorithm; docs/design.md, "Planning algorithm").

No filter is ranked. A unit is drawn with probability equal to its share of
the mode's complexity, a random few of its channels are removed, the
complexities are recomputed, and this repeats until the target reduction of
the mode's metric is met (or, with budgets, until every budget holds).

The step fraction, floor and rounding are not fixed by the paper; the
defaults here (10 % of a unit's channels per draw, never below 10 % of its
original width) are this project's choices and are parameters. With
`round_to` R > 1 every unit at least 2R wide ends with a multiple of R
channels: units whose width is not one lose their odd channels (at random)
before the first draw. Narrower units are not rounded (see `unit_rounding`).

Every metric is priced as the metric table (cdprune.metrics) says: by the size model, or by the model
it names, which make_plan supplies. Latency (mode `la`, latency budgets) is estimated from a per-layer
latency table: one measured on the target device (`latency_table=`, written by `cdprune latency-table`)
or one this machine builds and caches (cdprune.measure.layer_latency). Energy is priced by an energy model.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch.nn as nn

from ..complexity import Totals, architecture_id
from ..complexity import profile as profile_model
from .. import registry
from ..errors import CdpruneError, UnreachableTarget
from ..measure.energy import EnergyModel, energy_model_of
from ..metrics import ENERGY_MODEL, LATENCY_TABLE, METRICS, Metric, Sizes, budget_example, get_metric
from .pruning_plan import PruningPlan, UnitPlan, unit_rounding
from .units import ChannelModel, find_units, require_units

# Channel counts are rounded to multiples of this unless round_to says otherwise: make_plan, the CLI's
# --round-to and PlannerConfig (which every method of run, compare and sweep plans with) all take it from
# here, so the default is changed in one place (benchmarks/rounding.py measures what each value gains).
DEFAULT_ROUND_TO = 8


@dataclass(frozen=True)
class Mode:
    name: str
    metric: str  # a registered metric (cdprune.metrics): it weights draws and, by default, the target
    title: str
    equal_weights: bool = False  # draw units with equal probability (the layer-random ablation)


MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> Mode:
    get_metric(mode.metric)
    return registry.add(MODES, mode.name, mode, "pruning mode")


register_mode(Mode("pa", "params", "parameter-aware"))
register_mode(Mode("fa", "flops", "FLOPs-aware"))
register_mode(Mode("ma", "memory", "memory-aware"))
register_mode(Mode("la", "latency", "latency-aware"))
register_mode(Mode("ea", "energy", "energy-aware"))
register_mode(Mode("layer-random", "flops", "equal-probability units (ablation of the complexity weights)",
                   equal_weights=True))

AUTO = "auto"  # budget-driven: each draw follows the metric furthest over its budget


@dataclass(frozen=True)
class PlannerConfig:
    """How a planner moves through a network: the step per draw, the floor of each unit and the rounding of
    kept widths (§3.4). One record that a goal carries to every planner, the modes and the baselines alike,
    and that every run records."""

    step: float = 0.1  # fraction of a unit's channels removed per draw (the modes; the baselines take no steps)
    floor: float = 0.1  # fraction of a unit's channels always kept
    round_to: int = DEFAULT_ROUND_TO  # units at least 2·round_to wide keep a multiple of round_to channels

    def __post_init__(self):
        _, step, floor, round_to, _ = check_settings(None, self.step, self.floor, self.round_to)
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "floor", floor)
        object.__setattr__(self, "round_to", round_to)

    def to_dict(self) -> dict:
        return asdict(self)


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise CdpruneError(f"unknown mode '{name}'", f"choose one of {', '.join(MODES)}")
    return MODES[name]


def floor_count(channels: int, floor: float, round_to: int) -> int:
    """The fewest channels a unit may keep: ceil(floor·n), rounded up to a multiple of round_to."""
    least = max(1, math.ceil(floor * channels))
    least = math.ceil(least / round_to) * round_to
    return min(least, channels)


# A draw that would remove more than this beyond the target takes the step that reaches it with the least
# overshoot instead (docs/design.md, "Sampling"). The registered models overshoot by 3.3 points at most (targets
# 0.1 to 0.9, default settings), so their plans are as they were.
OVERSHOOT = 0.05


def next_count(current: int, least: int, step: float, round_to: int) -> int:
    """Channel count after one draw; equal to `current` when the unit is at its floor."""
    remove = max(1, math.floor(step * current + 0.5))  # round half up, unlike Python's round()
    new = (current - remove) // round_to * round_to
    return min(current, max(new, least))



def make_plan(model: nn.Module, input_shape=(3, 32, 32), mode: str | None = "fa", target: float | None = 0.5, *,
              budget: dict[str, float] | str | None = None, target_metric: str | None = None, seed: int = 0,
              step: float = 0.1, floor: float = 0.1, round_to: int = DEFAULT_ROUND_TO, refresh_latency: bool = False,
              latency_table=None, latency_runtime: str | None = None, latency_precision: str | None = None,
              energy_model: EnergyModel | str | None = None, margin: float = 0.0) -> PruningPlan:
    """Sample a pruning plan (docs/design.md, "Sampling").

    `model` is not modified; the same arguments and seed give the same plan.

    target: fraction to remove, in (0, 1), of the mode's metric or of `target_metric` when given, any metric
        of the table in cdprune.metrics (e.g. mode "pa" draws by parameter share but stops at a FLOPs
        reduction: equal-FLOPs comparisons).
        A target needs a mode: it is the mode that says which metric the target reduces.
    budget: upper limits per metric ({"flops": 100e6, "params": 2e6, "memory": 512e3 (bytes),
        "latency": 5.0 (ms), "energy": 5.0 (mJ)}); sampling goes on until every one holds. Limits may
        also be strings read as `parse_budget` reads them ({"flops": "100M", "energy": "500uJ"}), or the
        whole budget one string ("flops=100M,params=2M"). With a budget and mode=None, each draw follows
        the metric furthest over its budget.
    round_to: every unit at least 2·round_to wide keeps a multiple of this many channels; narrower units
        are not rounded (listed by the plan's `narrow_units`). Default DEFAULT_ROUND_TO.
    latency_table: for latency (mode "la", latency budgets), a table measured on the target device: a
        `LatencyTable` or the path of one written by `cdprune latency-table`. It must be for this
        architecture and input shape (and runtime, when `latency_runtime` is given). Without it, a
        table for this machine is built and cached.
    latency_runtime: the runtime whose latency the plan estimates, "torch" or "onnxruntime" (default:
        the table's, or torch for this machine's table).
    latency_precision: the precision the model ships in, "fp32" or "int8" (onnxruntime only; default: the
        table's, or fp32 for this machine's table). A table of another precision is refused.
    energy_model: the coefficients that price energy (an EnergyModel or a JSON file's path; default the
        45 nm model). The plan records it, with its energy before and after, whenever energy is part
        of the goal (mode ea, an energy target or budget) or an energy model is given.
    margin: a latency limit is planned to limit × (1 − margin), in [-0.5, 0.5): room for the device's run-to-run
        drift and the table's error (negative: the estimate may pass the limit, for a table known to
        overestimate the device, as `fit_plan` finds). The plan records the budget as given and, in its
        latency, the margin and the estimate it planned to (docs/design.md, "Margin").
    """
    budget = budget_limits(budget)
    margin = check_margin(margin, budget)
    energy = energy_model_of(energy_model)
    target, step, floor, round_to, seed = check_settings(target, step, floor, round_to, seed)
    table = _given_table(latency_table, latency_runtime, latency_precision)
    if target is None and not budget:
        raise CdpruneError("give a target reduction (--target) or a budget (--budget) to prune to")
    chosen = get_mode(mode) if mode is not None else None
    if chosen is None and target is not None:
        # Without a mode nothing says which metric the target reduces or how units are drawn once
        # the budgets hold; guessing one would silently prune by a metric the user did not pick.
        raise CdpruneError("a target (--target) needs a mode (--mode) saying which metric it reduces", "add a mode "
                           f"({', '.join(MODES)}), or drop the target and prune to the budget (--budget) alone")
    stop_metric = target_metric or (chosen.metric if chosen else None)
    if stop_metric is not None:
        get_metric(stop_metric)
    input_shape = tuple(int(s) for s in input_shape)
    base = profile_model(model, input_shape)
    channels = find_units(model, base)
    require_units(channels)
    # The models that price the goal's metrics (metrics.Metric.priced_by).
    pricing = {get_metric(m).priced_by for m in (*budget, stop_metric, chosen.metric if chosen else None) if m}
    wants_latency = LATENCY_TABLE in pricing
    latency = None
    if (table is not None or latency_runtime is not None or latency_precision is not None) and not wants_latency:
        what = "a latency table (--latency-table)" if table is not None else "a latency runtime (--runtime)" \
            if latency_runtime is not None else "a latency precision (--precision)"
        raise CdpruneError(f"{what} serves latency planning only", "plan with --mode la or --budget latency=..., "
                           "or drop it")
    if table is not None:
        table.check_fits(model, input_shape, latency_runtime, (m.name for m in channels.layers()), latency_precision)
        latency = table
    elif wants_latency:
        from ..measure.layer_latency import latency_table as cached_table

        from .baselines import half_width_copy

        latency = cached_table(model, input_shape, refresh=refresh_latency, runtime=latency_runtime or "torch",
                               precision=latency_precision or "fp32",
                               calibration=lambda: half_width_copy(model, input_shape))
    wants_energy = energy_model is not None or ENERGY_MODEL in pricing
    sampler = Sampler(channels, step, floor, round_to, seed, latency, energy if wants_energy else None)

    if target is not None:
        reachable = sampler.largest_reduction(stop_metric)
        if reachable < target:
            raise UnreachableTarget(f"target {target:g} is beyond reach", f"mode {chosen.name} can remove at most {reachable:.3f} "
                                    f"of the {stop_metric} with floor {floor:g}; lower --target or --floor")
    aims = aimed(budget, margin)
    for metric, limit in aims.items():
        least = sampler.smallest(metric)
        if least > limit:
            raise unreachable_budget(metric, budget[metric], least, floor, margin)

    while True:
        short = target is not None and sampler.reduction(stop_metric) < target
        over = {m: sampler.total(m) / limit for m, limit in aims.items() if sampler.total(m) > limit}
        if not short and not over:
            break
        metric = chosen.metric if chosen is not None else max(over, key=over.get)
        weights = sampler.weights(metric, equal=chosen is not None and chosen.equal_weights)
        if weights is None:  # cannot happen after the reachability checks, kept as a guard
            raise CdpruneError("every unit is at its floor before the goal was met; lower --floor")
        sampler.draw(weights, (stop_metric, target) if short and not over else None)
    return sampler.to_plan(model, input_shape, chosen.name if chosen else AUTO, target, budget, stop_metric, margin)


MIN_MARGIN, MAX_MARGIN = -0.5, 0.5


def check_margin(margin, budget: dict) -> float:
    """A latency margin in [MIN_MARGIN, MAX_MARGIN); other than 0 it needs a latency limit to apply to."""
    hint = "give the fraction of the latency limit kept free, e.g. --margin 0.05"
    margin = _real("margin", "--margin", margin, hint)
    if not MIN_MARGIN <= margin < MAX_MARGIN:
        raise CdpruneError(f"margin (--margin) {margin:g} is outside [{MIN_MARGIN:g}, {MAX_MARGIN:g})", hint)
    if margin != 0 and "latency" not in budget:
        raise CdpruneError("a margin (--margin) serves latency limits only", "add latency=... to --budget, or drop "
                           "--margin")
    return margin


def aimed(budget: dict, margin: float) -> dict:
    """The limits a plan is sampled to: a latency limit less its margin, the others as given."""
    return {m: limit * (1 - margin) if m == "latency" else limit for m, limit in budget.items()}


def unreachable_budget(metric: str, limit: float, least: float, floor: float, margin: float) -> UnreachableTarget:
    shown = get_metric(metric).show
    kept = f" less its margin {margin:g}" if margin and metric == "latency" else ""
    return UnreachableTarget(f"budget {metric}={shown(limit)}{kept} cannot be met", f"the least this model reaches "
                             f"with floor {floor:g} is {shown(least)}; raise the budget (--budget)"
                             f"{', lower --margin' if kept else ''} or lower --floor")


def _given_table(table, runtime, precision=None):
    """The latency table the caller gave (loaded when it is a path), or None; the runtime and precision checked."""
    from ..measure.layer_latency import LatencyTable, check_precision, check_runtime

    if runtime is not None:
        check_runtime(runtime)
    if precision is not None:
        # Without a runtime, the one the table names, else the one this machine's table would use.
        given = runtime or (table.runtime if isinstance(table, LatencyTable) else None)
        if given is None and isinstance(table, (str, os.PathLike)):
            loaded = LatencyTable.load(table)
            check_precision(loaded.runtime, precision)
            return loaded
        check_precision(given or "torch", precision)
    if table is None or isinstance(table, LatencyTable):
        return table
    if isinstance(table, (str, os.PathLike)):
        return LatencyTable.load(table)
    raise CdpruneError(f"latency_table must be a LatencyTable or the path of one, not {type(table).__name__}")


class Sampler:
    """The state of one sampling run: which channels each unit still keeps.

    Other planners (the baselines) choose channels by their own rules through the same state: they read
    `original` and `least` (position counts per unit, at full width and at the floor: channels, except in
    units around a grouped conv, see `units.Unit`), `rounding` (the multiple each unit keeps, see
    `unit_rounding`), `before` and `current` (totals), `rng` and `channels` (the network's ChannelModel),
    set a unit's channels with `keep`, evaluate candidate removals with `total` and `reduction`, and finish
    with `to_plan`.
    """

    def __init__(self, channels: ChannelModel, step: float, floor: float, round_to: int, seed: int, latency=None,
                 energy: EnergyModel | None = None):
        self.channels = channels
        self.latency = latency
        self.energy = energy
        self.pricing = {LATENCY_TABLE: latency, ENERGY_MODEL: energy}  # what prices the metrics that need a model
        self.step, self.floor, self.round_to, self.seed = step, floor, round_to, seed
        self.original = np.array([u.positions for u in channels.units])
        self.rounding = np.array([unit_rounding(n, round_to) for n in self.original])
        self.least = np.array([floor_count(n, floor, r) for n, r in zip(self.original, self.rounding)])
        self.kept = [np.arange(n) for n in self.original]
        self.removed = np.zeros(len(self.original), dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.sizes = channels.sizes(self.removed)
        self.before = self.current = _totals(self.sizes)
        self._dense: dict[str, float] = {}  # metric -> its total before pruning
        self._now: dict[str, float] = {}  # metric -> its total now; emptied whenever a unit changes
        self.steps = 0
        if round_to > 1:
            self._round_widths()

    def _round_widths(self) -> None:
        """Trim every rounded unit (unit_rounding) to the largest multiple of round_to, at random.

        Draws only ever leave multiples of a unit's rounding (or the floor, itself one), so after this
        every rounded unit keeps a multiple of round_to, drawn or not.
        """
        for u, unit in enumerate(self.channels.units):
            n, r = int(self.original[u]), int(self.rounding[u])
            if n % r == 0:  # a multiple already, or a unit that is not rounded (r = 1)
                continue
            top = n // r * r
            need = max(1, math.ceil(self.floor * n))
            if need > top:
                raise CdpruneError(f"floor (--floor) {self.floor:g} keeps {need} of unit {unit.name}'s {n} channels, more "
                                   f"than {top}, the largest multiple of round_to (--round-to) {r} that fits", "lower the "
                                   "floor or round_to")
            gone = self.rng.choice(n, size=n - top, replace=False)
            self.keep(u, np.setdiff1d(np.arange(n), gone))

    # -- state ----------------------------------------------------------------------------------
    def keep(self, u: int, indices) -> None:
        """Make unit `u` keep exactly the positions `indices` (channels numbered as in the base model, for a
        unit without groups); update the totals."""
        kept = np.unique(np.asarray(indices, dtype=np.int64))
        if not len(kept) or kept[0] < 0 or kept[-1] >= self.original[u]:
            raise ValueError(f"unit {self.channels.units[u].name} must keep at least one of its channels "
                             f"0..{self.original[u] - 1}")
        self.kept[u] = kept
        self.removed[u] = self.original[u] - len(kept)
        self.sizes = self.channels.sizes(self.removed)
        self.current = _totals(self.sizes)
        self._now = {}

    # -- metric totals and per-unit complexities ------------------------------------------------
    def total(self, metric: str, removed: np.ndarray | None = None) -> float:
        """The metric of the network as it is now, or when unit u has lost removed[u] positions."""
        if removed is not None:
            return self._price(get_metric(metric), np.asarray(removed))
        if metric not in self._now:
            self._now[metric] = self._price(get_metric(metric), self.removed, self.sizes)
        return self._now[metric]

    def _before(self, metric: str) -> float:
        if metric not in self._dense:
            self._dense[metric] = self.total(metric, np.zeros_like(self.removed))
        return self._dense[metric]

    def _model(self, metric: Metric):
        """The model that prices `metric` (None for the size model's metrics)."""
        if metric.priced_by is None:
            return None
        model = self.pricing.get(metric.priced_by)
        if model is None:
            raise CdpruneError(f"metric {metric.name} is priced by a {metric.priced_by}, which this planner was not "
                               "given", "aim at a metric the size model prices")
        return model

    def _price(self, metric: Metric, removed: np.ndarray, sizes: Sizes | None = None) -> float:
        model = self._model(metric)
        if metric.layer_cost is not None:
            return float(sum(self._layer_costs(metric, model, removed).values()))
        return metric.of(sizes if sizes is not None else self.channels.sizes(removed), model)

    def _layer_costs(self, metric: Metric, model, removed: np.ndarray) -> dict[str, float]:
        """A layer-priced metric (latency) of every conv and linear layer, at the channels each keeps."""
        return {name: metric.layer_cost(model, name, *pair) for name, pair in self.layer_fractions(removed).items()}

    def layer_fractions(self, removed: np.ndarray | None = None) -> dict[str, tuple[float, float]]:
        """Every conv and linear layer's (input, output) channel fractions, now or when unit u has lost removed[u]."""
        removed = self.removed if removed is None else removed
        out = {}
        for m in self.channels.layers():
            c_in, c_out = m.channels(removed)
            out[m.name] = (c_in / m.in_base, c_out / m.out_base)
        return out

    def unit_complexity(self, metric: str) -> np.ndarray:
        """c_u: the metric of each unit's convs at the current widths (§3.2)."""
        chosen = get_metric(metric)
        model = self._model(chosen)
        if chosen.layer_cost is not None:
            per_layer = self._layer_costs(chosen, model, self.removed)
            return np.array([sum(per_layer[m.name] for m in convs) for convs in self.channels.unit_convs])
        return chosen.of(self.channels.unit_sizes(self.removed), model)

    def largest_reduction(self, metric: str) -> float:
        return 1 - self.smallest(metric) / self._before(metric)

    def smallest(self, metric: str) -> float:
        """The metric's total with every unit at its floor (every metric only grows with channels)."""
        return self.total(metric, self.original - self.least)

    def reduction(self, metric: str, removed: np.ndarray | None = None) -> float:
        """The fraction of the metric removed now, or when unit u has lost removed[u] positions."""
        return 1 - self.total(metric, removed) / self._before(metric)

    def _after(self, u: int, count: int, metric: str) -> float:
        """The reduction of `metric` once unit u keeps `count` positions."""
        removed = self.removed.copy()
        removed[u] = self.original[u] - count
        return 1 - self.total(metric, removed) / self._before(metric)

    def _steps_reaching(self, goal: tuple[str, float]) -> list[tuple[int, int]]:
        """For every unit above its floor, the smallest step (to a count its rounding allows) that reaches the target."""
        metric, target = goal
        options = []
        for u in range(len(self.original)):
            current, least, r = len(self.kept[u]), int(self.least[u]), int(self.rounding[u])
            for count in range((current - 1) // r * r, least - 1, -r):
                if self._after(u, count, metric) >= target:
                    options.append((u, count))
                    break
        return options

    # -- sampling -------------------------------------------------------------------------------
    def weights(self, metric: str, equal: bool = False) -> np.ndarray | None:
        """Complexity weights w_u = c_u / Σc over the units not yet at their floor (equal=True: uniform)."""
        counts = self.original - self.removed
        movable = np.array([next_count(c, lo, self.step, r) < c for c, lo, r in zip(counts, self.least, self.rounding)])
        complexity = (1.0 if equal else np.clip(self.unit_complexity(metric), 0, None)) * movable
        total = complexity.sum()
        return complexity / total if total > 0 else None

    def draw(self, weights: np.ndarray, goal: tuple[str, float] | None = None) -> None:
        """One draw: a unit chosen by `weights` loses a step of its channels, at random.

        goal: (metric, target) of a target-driven plan. A step that would remove more than OVERSHOOT
        beyond the target (a whole rounded step or a group of a small network) becomes the drawn unit's
        smallest step that reaches the target; if that too passes it by more than OVERSHOOT, the step of
        any unit that passes it least.
        """
        u = int(self.rng.choice(len(weights), p=weights))
        current = len(self.kept[u])
        count = next_count(current, self.least[u], self.step, int(self.rounding[u]))
        if goal is not None and self._after(u, count, goal[0]) > goal[1] + OVERSHOOT:
            options = self._steps_reaching(goal)
            smaller = next(option for option in options if option[0] == u)  # the drawn step reaches the target
            if self._after(*smaller, goal[0]) <= goal[1] + OVERSHOOT:
                u, count = smaller
            else:
                u, count = min(options, key=lambda option: self._after(*option, goal[0]))
            current = len(self.kept[u])
        drop = current - count
        gone = self.rng.choice(self.kept[u], size=drop, replace=False)
        self.keep(u, np.setdiff1d(self.kept[u], gone))
        self.steps += 1

    def to_plan(self, model: nn.Module, input_shape, mode: str, target, budget, target_metric=None,
                margin: float = 0.0) -> PruningPlan:
        spec = getattr(model, "cdprune_spec", None) or {}
        units = tuple(UnitPlan(u.name, tuple(u.convs), u.channels, tuple(int(i) for i in u.expand(kept)))
                      for u, kept in zip(self.channels.units, self.kept))
        # The plan file records latency and energy in fields of their own (its format, §6).
        latency = {} if self.latency is None else {
            "before_ms": round(self._before("latency"), 4), "after_ms": round(self.total("latency"), 4),
            "source": f"per-layer latency table ({self.latency.describe()}), {self.latency.calibrated_to}",
            "runtime": self.latency.runtime, "precision": self.latency.precision, "threads": self.latency.threads,
            "cpu_model": self.latency.cpu_model}
        if margin:  # only then, so that plans without one keep the digest they always had
            latency.update(margin=margin, planned_to_ms=round(budget["latency"] * (1 - margin), 4))
        energy = {} if self.energy is None else {
            "model": self.energy.to_dict(), "before_mj": self._before("energy"), "after_mj": self.total("energy")}
        return PruningPlan(model=spec.get("name"), model_kwargs=dict(spec.get("kwargs", {})),
                           architecture=architecture_id(model), input_shape=tuple(input_shape), mode=mode,
                           target=target, seed=self.seed, step=self.step, floor=self.floor, round_to=self.round_to,
                           units=units, before=self.before, after=self.current, steps=self.steps,
                           budget=dict(budget), latency=latency, target_metric=target_metric, energy=energy)


def _totals(sizes: Sizes) -> Totals:
    return Totals(sizes.params, sizes.flops, sizes.memory_bytes)


def _parse_limit(metric: str, text: str, part: str) -> float:
    """'100M' -> 1e8 for a size metric, '5ms' -> 5.0 for latency, '500uJ' -> 0.5 (mJ) for energy (the units of
    the metric table); a one-line error naming `part` otherwise. Units are read in any case, except that an M
    never stands for an m: 5MJ is not 5 mJ but 10⁹ times that."""
    given = text.strip()
    number = given.lower().rstrip("abcdefghijklmnopqrstuvwxyzµμ")
    suffix = given[len(number):]
    unit = next((u for u in get_metric(metric).limit_units if u.lower() == suffix.lower()), None)
    if unit and unit[:1] == "m" and suffix[:1] == "M":
        raise CdpruneError(f"bad budget (--budget) '{part}': M means mega, not milli (m)",
                           f"write {number}m{suffix[1:]} for milli{'joules' if metric == 'energy' else 'seconds'}",
                           option="budget")
    try:
        limit = get_metric(metric).parse(text)
    except ValueError:
        raise CdpruneError(f"bad budget (--budget) '{part}'", f"use e.g. {budget_example()}") from None
    if not math.isfinite(limit) or limit <= 0:  # '1e400' overflows to infinity
        raise CdpruneError(f"bad budget (--budget) '{part}'", "a limit must be a positive finite number; "
                           f"use e.g. {budget_example()}")
    return limit


def parse_budget(text: str) -> dict[str, float]:
    """'flops=100M,params=2M,memory=512KB,latency=5ms,energy=5mJ' -> {"flops": 1e8, ...} (memory in bytes,
    latency in ms, energy in mJ)."""
    if not isinstance(text, str):
        raise CdpruneError(f"budget (--budget) must be text like flops=100M,params=2M, not {type(text).__name__}")
    budget = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name not in METRICS:
            raise CdpruneError(f"bad budget (--budget) '{part}'", f"use e.g. {budget_example()}")
        if name in budget:
            raise CdpruneError(f"budget (--budget) limits {name} twice", "give each metric one limit")
        budget[name] = _parse_limit(name, value, part)
    if not budget:
        raise CdpruneError("empty budget (--budget)", f"use e.g. {budget_example()}")
    return budget


def budget_limits(budget) -> dict[str, float]:
    """A budget as make_plan takes it (None, a dict of numbers or strings, or one string) -> checked limits."""
    if budget is None:
        return {}
    if isinstance(budget, str):
        return parse_budget(budget)
    if not isinstance(budget, Mapping):
        raise CdpruneError(f"budget (--budget) must be a dict of limits or text like flops=100M,params=2M, "
                           f"not {type(budget).__name__}")
    limits = {}
    for metric, limit in budget.items():
        if metric not in METRICS:
            raise CdpruneError(f"bad budget (--budget) metric {metric!r}", f"use limits on {', '.join(METRICS)}")
        if isinstance(limit, str):
            limits[metric] = _parse_limit(metric, limit, f"{metric}={limit}")
            continue
        if isinstance(limit, bool) or not isinstance(limit, numbers.Real):
            raise CdpruneError(f"bad budget (--budget) {metric}={limit!r}", "a limit is a number or text like '100M'")
        try:
            finite = math.isfinite(float(limit))
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite or not limit > 0:
            raise CdpruneError(f"bad budget (--budget) {metric}={limit}", "a limit must be a positive finite number; "
                               f"use e.g. {budget_example()}")
        limits[metric] = limit if type(limit) in (int, float) else float(limit)  # numpy scalars are not JSON
    return limits


def _real(name: str, flag: str, value, hint: str):
    """`value` as a finite real number, or a one-line error naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CdpruneError(f"{name} ({flag}) must be a number, not {str(value)[:40]!r}", hint)
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        raise CdpruneError(f"{name} ({flag}) is {value}, not a finite number", hint)
    return value if type(value) in (int, float) else float(value)


def _whole(name: str, flag: str, value, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CdpruneError(f"{name} ({flag}) must be a whole number, not {str(value)[:40]!r}", hint)
    return int(value)


def check_settings(target, step, floor, round_to, seed=0) -> tuple:
    """Check the sampling settings; return them as (target or None, step, floor, round_to, seed)."""
    if target is not None:
        hint = "give the fraction to remove, e.g. --target 0.5"
        target = _real("target", "--target", target, hint)
        if not 0 < target < 1:
            raise CdpruneError(f"target (--target) {target:g} is outside (0, 1)", hint)
    hint = "give the fraction of a unit's channels removed per draw, e.g. --step 0.1"
    step = _real("step", "--step", step, hint)
    if not 0 < step <= 1:
        raise CdpruneError(f"step (--step) {step:g} is outside (0, 1]: {hint}")
    hint = "give the fraction of a unit's channels always kept, e.g. --floor 0.1"
    floor = _real("floor", "--floor", floor, hint)
    if not 0 <= floor < 1:
        raise CdpruneError(f"floor (--floor) {floor:g} is outside [0, 1): {hint}")
    hint = "give a positive whole number, e.g. --round-to 8"
    round_to = _whole("round_to", "--round-to", round_to, hint)
    if round_to < 1:
        raise CdpruneError(f"round_to (--round-to) {round_to} is not positive", hint)
    hint = "give a whole number from 0 up, e.g. --seed 0"
    seed = _whole("seed", "--seed", seed, hint)
    if seed < 0:
        raise CdpruneError(f"seed (--seed) {seed} is negative", hint)
    return target, step, floor, round_to, seed
