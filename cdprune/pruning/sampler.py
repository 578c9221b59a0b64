"""Which channels go: complexity-weighted random sampling (the paper's algorithm, SPEC §3).

No filter is ranked. A unit is drawn with probability equal to its share of
the mode's complexity, a random few of its channels are removed, the
complexities are recomputed, and this repeats until the target reduction of
the mode's metric is met.

The step fraction, floor and rounding are not fixed by the paper; the
defaults here (10 % of a unit's channels per draw, never below 10 % of its
original width) are this project's choices and are parameters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from ..complexity import profile as profile_model
from ..errors import CdpruneError
from .pruning_plan import PruningPlan, UnitPlan
from .units import ChannelModel, architecture_id, find_units, require_units


@dataclass(frozen=True)
class Mode:
    name: str
    metric: str  # "params", "flops" or "memory"
    title: str


MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> Mode:
    MODES[mode.name] = mode
    return mode


register_mode(Mode("pa", "params", "parameter-aware"))
register_mode(Mode("fa", "flops", "FLOPs-aware"))
register_mode(Mode("ma", "memory", "memory-aware"))


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


def plan(model: nn.Module, input_shape=(3, 32, 32), mode: str = "fa", target: float = 0.5, *, seed: int = 0,
         step: float = 0.1, floor: float = 0.1, round_to: int = 1) -> PruningPlan:
    """Sample a pruning plan that removes at least `target` of the mode's metric (SPEC §3).

    `model` is not modified. The same arguments and seed always give the same plan.
    """
    chosen = get_mode(mode)
    _check_settings(target, step, floor, round_to)
    input_shape = tuple(int(s) for s in input_shape)
    base = profile_model(model, input_shape)
    channels = find_units(model, base)
    require_units(channels)
    sampler = _Sampler(channels, step, floor, round_to, seed)

    metric = chosen.metric
    reachable = sampler.largest_reduction(metric)
    if reachable < target:
        raise CdpruneError(f"target {target:g} is beyond reach: mode {mode} can remove at most {reachable:.3f} of the "
                           f"{metric} with floor {floor:g}; lower --target or --floor")
    while sampler.reduction(metric) < target:
        weights = sampler.weights(metric)
        if weights is None:  # cannot happen after the reachability check, kept as a guard
            raise CdpruneError(f"every unit is at its floor before the target; largest reachable reduction {reachable:.3f}")
        sampler.draw(weights)
    return sampler.to_plan(model, input_shape, mode, target)


class _Sampler:
    """The state of one sampling run: which channels each unit still keeps."""

    def __init__(self, channels: ChannelModel, step: float, floor: float, round_to: int, seed: int):
        self.model = channels
        self.step, self.floor, self.round_to, self.seed = step, floor, round_to, seed
        self.original = np.array([u.channels for u in channels.units])
        self.least = np.array([floor_count(n, floor, round_to) for n in self.original])
        self.kept = [np.arange(n) for n in self.original]
        self.removed = np.zeros(len(self.original), dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.before = channels.totals(self.removed)
        self.current = self.before
        self.steps = 0

    def largest_reduction(self, metric: str) -> float:
        at_floor = self.model.totals(self.original - self.least)
        return 1 - at_floor.metric(metric) / self.before.metric(metric)

    def reduction(self, metric: str) -> float:
        return 1 - self.current.metric(metric) / self.before.metric(metric)

    def weights(self, metric: str) -> np.ndarray | None:
        """Complexity weights w_u = c_u / Σc over the units not yet at their floor."""
        counts = self.original - self.removed
        movable = np.array([next_count(c, lo, self.step, self.round_to) < c for c, lo in zip(counts, self.least)])
        complexity = self.model.unit_complexity(self.removed, metric) * movable
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
        self.steps += 1

    def to_plan(self, model: nn.Module, input_shape, mode: str, target, budget=None) -> PruningPlan:
        spec = getattr(model, "cdprune_spec", None) or {}
        units = tuple(UnitPlan(u.name, tuple(u.convs), u.channels, tuple(int(i) for i in kept))
                      for u, kept in zip(self.model.units, self.kept))
        return PruningPlan(model=spec.get("name"), model_kwargs=dict(spec.get("kwargs", {})),
                           architecture=architecture_id(model), input_shape=tuple(input_shape), mode=mode,
                           target=target, seed=self.seed, step=self.step, floor=self.floor, round_to=self.round_to,
                           units=units, before=self.before, after=self.current, steps=self.steps, budget=budget or {})


def _check_settings(target: float, step: float, floor: float, round_to: int) -> None:
    if not 0 < target < 1:
        raise CdpruneError(f"target {target:g} is outside (0, 1): give the fraction to remove, e.g. --target 0.5")
    if not 0 < step <= 1:
        raise CdpruneError(f"step {step:g} is outside (0, 1]: give the fraction of a unit's channels removed per draw, e.g. --step 0.1")
    if not 0 <= floor < 1:
        raise CdpruneError(f"floor {floor:g} is outside [0, 1): give the fraction of a unit's channels always kept, e.g. --floor 0.1")
    if round_to < 1:
        raise CdpruneError(f"round_to {round_to} must be a positive integer, e.g. --round-to 8")
