"""Baseline pruning plans to compare the complexity-driven modes against.

- `uniform_plan`: the same fraction of channels removed from every unit, at random
  (plain pruning from scratch).
- `l1_plan`: Li et al. 2017 — the same fraction per unit, but the filters with the
  smallest L1 norm go (needs trained weights).
- `magnitude_plan`: torch-pruning's group magnitude importance, ranked globally
  across units (needs trained weights).

Each reaches `target` on `metric` as closely as its granularity allows (one channel
per unit for the per-unit rules, a small chunk of channels for the global ranking).
`layer-random`, the ablation of the complexity weights, is a sampler mode.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn
import torch_pruning as tp

from ..complexity import profile as profile_model
from ..errors import CdpruneError, UnreachableTarget
from .pruning_plan import PruningPlan
from .sampler import BUDGET_METRICS, Sampler, check_settings
from .units import build_graph, find_units, require_units


def _setup(model: nn.Module, input_shape, target: float, metric: str, floor: float, seed: int) -> Sampler:
    if target is None:
        raise CdpruneError("the baselines need a target reduction (--target), e.g. --target 0.5")
    target, _, floor, _, seed = check_settings(target, 0.1, floor, 1, seed)
    if metric not in BUDGET_METRICS[:3]:
        raise CdpruneError(f"unknown metric '{metric}': choose params, flops or memory")
    channels = find_units(model, profile_model(model, tuple(input_shape)))
    require_units(channels)
    state = Sampler(channels, 0.1, floor, 1, seed)
    if state.largest_reduction(metric) < target:
        raise UnreachableTarget(f"target {target:g} is beyond reach: at most {state.largest_reduction(metric):.3f} of the "
                           f"{metric} can go with floor {floor:g}; lower --target or --floor")
    return state


def _uniform_counts(state: Sampler, target: float, metric: str) -> np.ndarray:
    """Channels to remove per unit for the smallest common fraction that reaches the target."""

    def removed_at(fraction: float) -> np.ndarray:
        drop = np.floor(fraction * state.original + 0.5).astype(np.int64)
        return np.minimum(drop, state.original - state.least)

    def reduction(fraction: float) -> float:
        return 1 - state.totals_at(removed_at(fraction)).metric(metric) / state.before.metric(metric)

    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisection on the common fraction; the reduction only grows with it
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if reduction(mid) < target else (lo, mid)
    return removed_at(hi)


def uniform_plan(model: nn.Module, input_shape, target: float, metric: str = "flops", *, seed: int = 0,
                 floor: float = 0.1) -> PruningPlan:
    """Remove the same fraction of every unit's channels, chosen at random."""
    state = _setup(model, input_shape, target, metric, floor, seed)
    for u, drop in enumerate(_uniform_counts(state, target, metric)):
        gone = state.rng.choice(state.original[u], size=int(drop), replace=False)
        state.keep(u, np.setdiff1d(np.arange(state.original[u]), gone))
    return state.to_plan(model, input_shape, "uniform", target, {}, metric)


def l1_plan(model: nn.Module, input_shape, target: float, metric: str = "flops", *, floor: float = 0.1) -> PruningPlan:
    """Li et al. 2017: the same fraction per unit; the filters with the smallest L1 norm go (trained `model`)."""
    state = _setup(model, input_shape, target, metric, floor, 0)
    for u, drop in enumerate(_uniform_counts(state, target, metric)):
        unit = state.channels.units[u]
        norms = sum(_filter_l1(model.get_submodule(c)) for c in unit.convs).cpu().numpy()
        # A position of a unit around a grouped conv is one channel per group: its norm is their sum.
        order = np.argsort(norms.reshape(unit.groups, unit.positions).sum(0), kind="stable")
        state.keep(u, order[int(drop):])
    return state.to_plan(model, input_shape, "l1", target, {}, metric)


def _filter_l1(conv: nn.Module) -> torch.Tensor:
    """L1 norm of each output channel's filter; a transposed conv keeps its output channels on weight dim 1."""
    weight = conv.weight.detach()
    if getattr(conv, "transposed", False):
        weight = weight.transpose(0, 1)
    return weight.abs().flatten(1).sum(1)


def magnitude_plan(model: nn.Module, input_shape, target: float, metric: str = "flops", *,
                   floor: float = 0.1) -> PruningPlan:
    """torch-pruning's GroupMagnitudeImportance (L2, mean-normalised per group), ranked globally across units."""
    state = _setup(model, input_shape, target, metric, floor, 0)
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
    removed = {u: [] for u in range(len(state.original))}
    chunk = max(1, int(state.original.sum()) // 1000)
    drop = np.zeros(len(state.original), dtype=np.int64)
    i = 0
    while 1 - state.totals_at(drop).metric(metric) / state.before.metric(metric) < target:
        taken = 0
        while taken < chunk and i < len(scored):
            _, u, c = scored[i]
            i += 1
            if drop[u] < state.original[u] - state.least[u]:
                removed[u].append(c)
                drop[u] += 1
                taken += 1
        if i >= len(scored):
            break
    for u in removed:
        state.keep(u, np.setdiff1d(np.arange(state.original[u]), removed[u]))
    return state.to_plan(model, input_shape, "tp-magnitude", target, {}, metric)


