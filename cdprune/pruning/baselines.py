"""Baseline pruning plans to compare the complexity-driven modes against.

- `uniform_plan`: the same fraction of channels removed from every unit, at random
  (plain pruning from scratch).
- `l1_plan`: Li et al. 2017 — the same fraction per unit, but the filters with the
  smallest L1 norm go (needs trained weights).
- `magnitude_plan`: torch-pruning's group magnitude importance, ranked globally
  across units (needs trained weights).

Each reaches `target` on `metric` (a metric the size model prices, see cdprune.metrics) as
closely as its granularity allows (one channel per unit for the per-unit rules, a small chunk
of channels for the global ranking). They honour the planner's floor and rounding as the modes
do: every unit at least 2·round_to wide keeps a multiple of round_to channels (`unit_rounding`),
never fewer than its floor. `layer-random`, the ablation of the complexity weights, is a sampler mode.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch_pruning as tp

from ..complexity import profile as profile_model
from ..errors import CdpruneError, UnreachableTarget
from ..metrics import LATENCY_TABLE, METRICS, metric_names
from ..measure.layer_latency import CALIBRATION_FRACTION
from .apply import apply_plan, filter_l1
from .pruning_plan import PruningPlan
from .sampler import DEFAULT_ROUND_TO, Sampler, aimed, budget_limits, check_margin, check_settings, unreachable_budget
from .units import build_graph, find_units, require_units


def _setup(model: nn.Module, input_shape, target: float | None, metric: str, step: float, floor: float,
           round_to: int, seed: int, budget: dict | None = None, latency=None, energy=None,
           margin: float = 0.0) -> Sampler:
    if budget or margin:
        return _budget_setup(model, input_shape, target, budget, step, floor, round_to, seed, latency, energy, margin)
    if target is None:
        raise CdpruneError("the baselines need a target reduction (--target), e.g. --target 0.5")
    target, step, floor, round_to, seed = check_settings(target, step, floor, round_to, seed)
    if metric not in METRICS or not METRICS[metric].sized:
        sized = metric_names(lambda m: m.sized)
        raise CdpruneError(f"unknown metric '{metric}' for a baseline", f"choose {', '.join(sized)}")
    channels = find_units(model, profile_model(model, tuple(input_shape)))
    require_units(channels)
    state = Sampler(channels, step, floor, round_to, seed)
    if state.largest_reduction(metric) < target:
        raise UnreachableTarget(f"target {target:g} is beyond reach", f"at most {state.largest_reduction(metric):.3f} of the "
                           f"{metric} can go with floor {floor:g}; lower --target or --floor")
    return state


def _budget_setup(model, input_shape, target, budget: dict, step, floor, round_to, seed, latency, energy,
                  margin: float) -> Sampler:
    """The sampler state for a budget: limits priced as make_plan prices them (the latency table and energy model
    given), each checked reachable at the floor."""
    budget = budget_limits(budget)
    margin = check_margin(margin, budget)
    if target is not None:
        raise CdpruneError("a baseline aims at a target (--target) or a budget (--budget), not both", "drop one")
    _, step, floor, round_to, seed = check_settings(None, step, floor, round_to, seed)
    channels = find_units(model, profile_model(model, tuple(input_shape)))
    require_units(channels)
    if LATENCY_TABLE in {METRICS[m].priced_by for m in budget} and latency is not None:
        latency.check_fits(model, tuple(input_shape), None, (m.name for m in channels.layers()))
    state = Sampler(channels, step, floor, round_to, seed, latency, energy)
    for metric, limit in aimed(budget, margin).items():
        least = state.smallest(metric)
        if least > limit:
            raise unreachable_budget(metric, budget[metric], least, floor, margin)
    return state


def _goal_test(state: Sampler, target: float | None, metric: str, budget: dict | None, margin: float = 0.0):
    """removed -> whether the goal holds: the target reduction of `metric`, or every limit of `budget` (latency
    less its margin)."""
    if budget:
        limits = aimed(budget_limits(budget), margin)
        return lambda removed: all(state.total(m, removed) <= limit for m, limit in limits.items())
    return lambda removed: state.reduction(metric, removed) >= target


def _finish(state: Sampler, model, input_shape, mode: str, target, metric: str, budget,
            margin: float = 0.0) -> PruningPlan:
    if budget:
        return state.to_plan(model, input_shape, mode, None, budget_limits(budget), margin=margin)
    return state.to_plan(model, input_shape, mode, target, {}, metric)


def _rounded_removal(state: Sampler, drop: np.ndarray) -> np.ndarray:
    """Positions each unit loses when it is to lose `drop`: what it keeps rounded down to its multiple
    (`Sampler.rounding`), and never below its floor."""
    kept = np.maximum((state.original - drop) // state.rounding * state.rounding, state.least)
    return state.original - kept


def _uniform_counts(state: Sampler, reached) -> np.ndarray:
    """Channels to remove per unit for the smallest common fraction at which `reached(removed)` holds (the
    target, or every limit of a budget)."""

    def removed_at(fraction: float) -> np.ndarray:
        return _rounded_removal(state, np.floor(fraction * state.original + 0.5).astype(np.int64))

    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisection on the common fraction; every metric only falls as it grows
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reached(removed_at(mid)) else (mid, hi)
    return removed_at(hi)


def uniform_plan(model: nn.Module, input_shape, target: float | None, metric: str = "flops", *, seed: int = 0,
                 floor: float = 0.1, round_to: int = DEFAULT_ROUND_TO, step: float = 0.1, budget: dict | None = None,
                 latency=None, energy=None, margin: float = 0.0) -> PruningPlan:
    """Remove the same fraction of every unit's channels, chosen at random. `step` is only recorded in the plan
    (a baseline takes no steps), so that it states the planner settings it was made under.

    budget: instead of a target, upper limits per metric (as make_plan takes them); the common fraction is the
        smallest at which every limit holds, each priced as make_plan prices it: by the size model, the
        latency table `latency` or the energy model `energy`.
    margin: a latency limit is reached less this fraction of it, as make_plan's `margin`.
    """
    state = _setup(model, input_shape, target, metric, step, floor, round_to, seed, budget, latency, energy, margin)
    for u, drop in enumerate(_uniform_counts(state, _goal_test(state, target, metric, budget, margin))):
        gone = state.rng.choice(state.original[u], size=int(drop), replace=False)
        state.keep(u, np.setdiff1d(np.arange(state.original[u]), gone))
    return _finish(state, model, input_shape, "uniform", target, metric, budget, margin)


def half_width_copy(model: nn.Module, input_shape, round_to: int = DEFAULT_ROUND_TO) -> tuple[nn.Module, dict]:
    """(a pruned copy of `model` with every prunable unit at half its channels, rounded as the planner rounds,
    {layer: (in, out) channel fractions} as the planner prices latency): the second point a latency table is
    calibrated on (`build_latency_table`'s calibration_model and calibration_fractions). Which channels stay
    does not change a latency, so each unit keeps its first ones. `model` is not changed."""
    input_shape = tuple(int(s) for s in input_shape)
    channels = find_units(model, profile_model(model, input_shape))
    require_units(channels)
    state = Sampler(channels, 0.1, 0.1, round_to, 0)
    drop = np.floor(CALIBRATION_FRACTION * state.original + 0.5).astype(np.int64)
    for u, gone in enumerate(_rounded_removal(state, drop)):
        state.keep(u, np.arange(state.original[u] - gone))
    plan = state.to_plan(model, input_shape, "uniform", None, {})
    return apply_plan(copy.deepcopy(model), plan), state.layer_fractions()


def l1_plan(model: nn.Module, input_shape, target: float | None, metric: str = "flops", *, floor: float = 0.1,
            round_to: int = DEFAULT_ROUND_TO, step: float = 0.1, budget: dict | None = None, latency=None,
            energy=None, margin: float = 0.0) -> PruningPlan:
    """Li et al. 2017: the same fraction per unit; the filters with the smallest L1 norm go (trained `model`).
    budget, latency, energy, margin: as for `uniform_plan`."""
    state = _setup(model, input_shape, target, metric, step, floor, round_to, 0, budget, latency, energy, margin)
    for u, drop in enumerate(_uniform_counts(state, _goal_test(state, target, metric, budget, margin))):
        unit = state.channels.units[u]
        norms = sum(filter_l1(model.get_submodule(c)) for c in unit.convs).cpu().numpy()
        # A position of a unit around a grouped conv is one channel per group: its norm is their sum.
        order = np.argsort(norms.reshape(unit.groups, unit.positions).sum(0), kind="stable")
        state.keep(u, order[int(drop):])
    return _finish(state, model, input_shape, "l1", target, metric, budget, margin)


def magnitude_plan(model: nn.Module, input_shape, target: float | None, metric: str = "flops", *, floor: float = 0.1,
                   round_to: int = DEFAULT_ROUND_TO, step: float = 0.1, budget: dict | None = None, latency=None,
                   energy=None, margin: float = 0.0) -> PruningPlan:
    """torch-pruning's GroupMagnitudeImportance (L2, mean-normalised per group), ranked globally across units.
    budget, latency, energy, margin: as for `uniform_plan`; the ranking goes on until every limit holds."""
    state = _setup(model, input_shape, target, metric, step, floor, round_to, 0, budget, latency, energy, margin)
    reached = _goal_test(state, target, metric, budget, margin)
    graph = build_graph(model, input_shape)
    importance = tp.importance.GroupMagnitudeImportance(p=2, normalizer="mean")
    scored = []  # (score, unit, channel)
    with torch.no_grad():
        for u, unit in enumerate(state.channels.units):
            root = model.get_submodule(unit.name)
            group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels,
                                            list(range(unit.channels)))
            scores = importance(group).cpu().numpy().reshape(unit.groups, unit.positions).sum(0)
            for c, score in enumerate(scores):
                scored.append((float(score), u, c))
    scored.sort()
    ranked = [[] for _ in state.original]  # each unit's positions, lowest score first
    for _, u, c in scored:
        ranked[u].append(c)
    chunk = max(1, int(state.original.sum()) // 1000)
    drop = np.zeros(len(state.original), dtype=np.int64)
    i = 0
    # Each unit's count is rounded as the planner rounds (a rounded count only removes more), and the target is
    # tested on the rounded counts, so rounding does not carry the plan further past it than it must.
    while not reached(_rounded_removal(state, drop)):
        taken = 0
        while taken < chunk and i < len(scored):
            _, u, c = scored[i]
            i += 1
            if drop[u] < state.original[u] - state.least[u]:
                drop[u] += 1
                taken += 1
        if i >= len(scored):
            break
    for u, gone in enumerate(_rounded_removal(state, drop)):
        state.keep(u, np.setdiff1d(np.arange(state.original[u]), ranked[u][:gone]))
    return _finish(state, model, input_shape, "tp-magnitude", target, metric, budget, margin)


