"""Which channels go: complexity-weighted random sampling (the paper's algorithm, SPEC §3).

No filter is ranked. A unit is drawn with probability equal to its share of
the mode's complexity, a random few of its channels are removed, the
complexities are recomputed, and this repeats until the target reduction of
the mode's metric is met (or, with budgets, until every budget holds).

The step fraction, floor and rounding are not fixed by the paper; the
defaults here (10 % of a unit's channels per draw, never below 10 % of its
original width) are this project's choices and are parameters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from ..complexity import architecture_id
from ..complexity import profile as profile_model
from ..errors import CdpruneError, UnreachableTarget
from ..formatting import human_bytes, human_count
from .pruning_plan import PruningPlan, UnitPlan
from .units import ChannelModel, find_units, require_units

SIZE_METRICS = ("params", "flops", "memory")
BUDGET_METRICS = SIZE_METRICS + ("latency",)


@dataclass(frozen=True)
class Mode:
    name: str
    metric: str  # "params", "flops", "memory" or "latency": weights draws and, by default, the target
    title: str
    equal_weights: bool = False  # draw units with equal probability (the layer-random ablation)


MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> Mode:
    MODES[mode.name] = mode
    return mode


register_mode(Mode("pa", "params", "parameter-aware"))
register_mode(Mode("fa", "flops", "FLOPs-aware"))
register_mode(Mode("ma", "memory", "memory-aware"))
register_mode(Mode("la", "latency", "latency-aware"))
register_mode(Mode("layer-random", "flops", "equal-probability units (ablation of the complexity weights)",
                   equal_weights=True))

AUTO = "auto"  # budget-driven: each draw follows the metric furthest over its budget


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise CdpruneError(f"unknown mode '{name}': choose one of {', '.join(MODES)}")
    return MODES[name]


def floor_count(channels: int, floor: float, round_to: int) -> int:
    """The fewest channels a unit may keep: ceil(floor·n), rounded up to a multiple of round_to."""
    least = max(1, math.ceil(floor * channels))
    least = math.ceil(least / round_to) * round_to
    return min(least, channels)


def next_count(current: int, least: int, step: float, round_to: int) -> int:
    """Channel count after one draw; equal to `current` when the unit is at its floor."""
    remove = max(1, math.floor(step * current + 0.5))  # round half up, unlike Python's round()
    new = (current - remove) // round_to * round_to
    return min(current, max(new, least))


def make_plan(model: nn.Module, input_shape=(3, 32, 32), mode: str | None = "fa", target: float | None = 0.5, *,
         budget: dict[str, float] | None = None, target_metric: str | None = None, seed: int = 0, step: float = 0.1,
         floor: float = 0.1, round_to: int = 1, refresh_latency: bool = False) -> PruningPlan:
    """Sample a pruning plan (SPEC §3). `model` is not modified; the same arguments and seed give the same plan.

    target: fraction to remove, in (0, 1), of the mode's metric or of `target_metric` when given
        (e.g. mode "pa" draws by parameter share but stops at a FLOPs reduction: equal-FLOPs comparisons).
    budget: upper limits per metric ({"flops": 100e6, "params": 2e6, "memory": 512e3 (bytes),
        "latency": 5.0 (ms)}); sampling goes on until every one holds. With a budget and mode=None,
        each draw follows the metric furthest over its budget.
    """
    budget = dict(budget or {})
    if target is None and not budget:
        raise CdpruneError("give a --target reduction or a --budget to prune to")
    chosen = get_mode(mode) if mode is not None else None
    if chosen is None and not budget:
        raise CdpruneError("give a --mode (pa, fa, ma, la) for a --target reduction")
    for metric, limit in budget.items():
        if metric not in BUDGET_METRICS or not limit > 0:
            raise CdpruneError(f"bad budget {metric}={limit}: use positive limits on {', '.join(BUDGET_METRICS)}")
    _check_settings(target, step, floor, round_to)
    stop_metric = target_metric or (chosen.metric if chosen else None)
    if stop_metric is not None and stop_metric not in BUDGET_METRICS:
        raise CdpruneError(f"unknown metric '{stop_metric}': choose one of {', '.join(BUDGET_METRICS)}")
    input_shape = tuple(int(s) for s in input_shape)
    base = profile_model(model, input_shape)
    channels = find_units(model, base)
    require_units(channels)
    wants_latency = "latency" in budget or "latency" in (stop_metric, chosen.metric if chosen else None)
    latency = None
    if wants_latency:
        from ..measure.layer_latency import latency_table

        latency = latency_table(model, input_shape, refresh=refresh_latency)
    sampler = _Sampler(channels, step, floor, round_to, seed, latency)

    if target is not None:
        reachable = sampler.largest_reduction(stop_metric)
        if reachable < target:
            raise UnreachableTarget(f"target {target:g} is beyond reach: mode {chosen.name} can remove at most {reachable:.3f} "
                               f"of the {stop_metric} with floor {floor:g}; lower --target or --floor")
    for metric, limit in budget.items():
        least = sampler.smallest(metric)
        if least > limit:
            raise UnreachableTarget(f"budget {metric}={_show(metric, limit)} cannot be met: the least this model reaches with "
                               f"floor {floor:g} is {_show(metric, least)}; raise the budget or lower --floor")

    while True:
        short = target is not None and sampler.reduction(stop_metric) < target
        over = {m: sampler.total(m) / limit for m, limit in budget.items() if sampler.total(m) > limit}
        if not short and not over:
            break
        metric = chosen.metric if chosen is not None else max(over, key=over.get)
        weights = sampler.weights(metric, equal=chosen is not None and chosen.equal_weights)
        if weights is None:  # cannot happen after the reachability checks, kept as a guard
            raise CdpruneError("every unit is at its floor before the goal was met; lower --floor")
        sampler.draw(weights)
    return sampler.to_plan(model, input_shape, chosen.name if chosen else AUTO, target, budget, stop_metric)


class _Sampler:
    """The state of one sampling run: which channels each unit still keeps."""

    def __init__(self, channels: ChannelModel, step: float, floor: float, round_to: int, seed: int, latency=None):
        self.model = channels
        self.latency = latency
        self.step, self.floor, self.round_to, self.seed = step, floor, round_to, seed
        self.original = np.array([u.channels for u in channels.units])
        self.least = np.array([floor_count(n, floor, round_to) for n in self.original])
        self.kept = [np.arange(n) for n in self.original]
        self.removed = np.zeros(len(self.original), dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.before = channels.totals(self.removed)
        self.current = self.before
        self.before_ms = self._latency_ms(self.removed) if latency else None
        self.current_ms = self.before_ms
        self.steps = 0

    # -- metric totals and per-unit complexities ------------------------------------------------
    def total(self, metric: str, removed: np.ndarray | None = None) -> float:
        if removed is not None:
            return self._latency_ms(removed) if metric == "latency" else self.model.totals(removed).metric(metric)
        return self.current_ms if metric == "latency" else self.current.metric(metric)

    def _latency_layers(self, removed: np.ndarray) -> dict[str, float]:
        """Estimated ms of every conv and linear layer, calibrated to the measured network latency."""
        scale = self.latency.calibration
        out = {}
        for m in self.model.layers():
            c_in, c_out = m.channels(removed)
            out[m.name] = scale * self.latency.layer_ms(m.name, c_in / m.in_base, c_out / m.out_base)
        return out

    def _latency_ms(self, removed: np.ndarray) -> float:
        return float(sum(self._latency_layers(removed).values()))

    def unit_complexity(self, metric: str) -> np.ndarray:
        if metric != "latency":
            return self.model.unit_complexity(self.removed, metric)
        per_layer = self._latency_layers(self.removed)
        return np.array([sum(per_layer[m.name] for m in convs) for convs in self.model.unit_convs])

    def largest_reduction(self, metric: str) -> float:
        before = self.before_ms if metric == "latency" else self.before.metric(metric)
        return 1 - self.smallest(metric) / before

    def smallest(self, metric: str) -> float:
        """The metric's total with every unit at its floor (every metric only grows with channels)."""
        return self.total(metric, self.original - self.least)

    def reduction(self, metric: str) -> float:
        before = self.before_ms if metric == "latency" else self.before.metric(metric)
        return 1 - self.total(metric) / before

    # -- sampling -------------------------------------------------------------------------------
    def weights(self, metric: str, equal: bool = False) -> np.ndarray | None:
        """Complexity weights w_u = c_u / Σc over the units not yet at their floor (equal=True: uniform)."""
        counts = self.original - self.removed
        movable = np.array([next_count(c, lo, self.step, self.round_to) < c for c, lo in zip(counts, self.least)])
        complexity = (1.0 if equal else np.clip(self.unit_complexity(metric), 0, None)) * movable
        total = complexity.sum()
        return complexity / total if total > 0 else None

    def draw(self, weights: np.ndarray) -> None:
        u = int(self.rng.choice(len(weights), p=weights))
        current = len(self.kept[u])
        drop = current - next_count(current, self.least[u], self.step, self.round_to)
        gone = self.rng.choice(self.kept[u], size=drop, replace=False)
        self.kept[u] = np.setdiff1d(self.kept[u], gone)
        self.removed[u] += drop
        self.current = self.model.totals(self.removed)
        if self.latency is not None:
            self.current_ms = self._latency_ms(self.removed)
        self.steps += 1

    def to_plan(self, model: nn.Module, input_shape, mode: str, target, budget, target_metric=None) -> PruningPlan:
        spec = getattr(model, "cdprune_spec", None) or {}
        units = tuple(UnitPlan(u.name, tuple(u.convs), u.channels, tuple(int(i) for i in kept))
                      for u, kept in zip(self.model.units, self.kept))
        latency = {} if self.latency is None else {
            "before_ms": round(self.before_ms, 4), "after_ms": round(self.current_ms, 4),
            "source": "per-layer latency table on this CPU, calibrated to the measured dense network",
            "threads": self.latency.key["threads"]}
        return PruningPlan(model=spec.get("name"), model_kwargs=dict(spec.get("kwargs", {})),
                           architecture=architecture_id(model), input_shape=tuple(input_shape), mode=mode,
                           target=target, seed=self.seed, step=self.step, floor=self.floor, round_to=self.round_to,
                           units=units, before=self.before, after=self.current, steps=self.steps,
                           budget=dict(budget), latency=latency, target_metric=target_metric)


def _show(metric: str, value: float) -> str:
    if metric == "latency":
        return f"{value:.2f}ms"
    return human_bytes(value) if metric == "memory" else human_count(value)


def parse_budget(text: str) -> dict[str, float]:
    """'flops=100M,params=2M,memory=512KB,latency=5ms' -> {"flops": 1e8, ...} (memory in bytes, latency in ms)."""
    scales = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9,
              "kib": 2**10, "mib": 2**20, "gib": 2**30}
    times = {"ms": 1.0, "s": 1000.0, "us": 1e-3}
    budget = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name, value = name.strip().lower(), value.strip().lower()
        number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
        suffix = value[len(number):]
        table = times if name == "latency" else scales
        if name not in BUDGET_METRICS or suffix not in table:
            raise CdpruneError(f"bad budget '{part}': use e.g. flops=100M,params=2M,memory=512KB,latency=5ms")
        try:
            budget[name] = float(number) * table[suffix]
        except ValueError:
            raise CdpruneError(f"bad budget '{part}': use e.g. flops=100M,params=2M,memory=512KB,latency=5ms") from None
    if not budget:
        raise CdpruneError("empty --budget: use e.g. flops=100M,params=2M")
    return budget


def _check_settings(target: float | None, step: float, floor: float, round_to: int) -> None:
    if target is not None and not 0 < target < 1:
        raise CdpruneError(f"target {target:g} is outside (0, 1): give the fraction to remove, e.g. --target 0.5")
    if not 0 < step <= 1:
        raise CdpruneError(f"step {step:g} is outside (0, 1]: give the fraction of a unit's channels removed per draw, e.g. --step 0.1")
    if not 0 <= floor < 1:
        raise CdpruneError(f"floor {floor:g} is outside [0, 1): give the fraction of a unit's channels always kept, e.g. --floor 0.1")
    if round_to < 1:
        raise CdpruneError(f"round_to {round_to} must be a positive integer, e.g. --round-to 8")
