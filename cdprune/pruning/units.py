"""Where channels are coupled: prunable units found by torch-pruning's DependencyGraph.

A *unit* is a set of channels that must be removed together (a conv and its BN,
the convs feeding one residual add, a pointwise conv and the depthwise conv after
it). Besides finding units, this module keeps an exact arithmetic model of how
every layer's size depends on the number of channels each unit keeps, so the
planner can evaluate thousands of candidate steps without touching the network.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch_pruning as tp

from ..complexity import BYTES_PER_VALUE, CONV_TYPES, Profile, Totals, kernel_volume, traffic_bytes
from ..complexity import profile as profile_model
from ..errors import CdpruneError
from ..metrics import Sizes
from ..records import Record

_IN_CHANNEL_FNS = {tp.pruner.function.prune_conv_in_channels, tp.pruner.function.prune_linear_in_channels}


@dataclass
class Unit:
    """Channels removed together. `convs` are the convs whose output channels are these channels.

    A unit that feeds or leaves a grouped conv has `groups` g > 1: its channels fall into g equal
    blocks, and every block must lose the same positions so that each group of the conv keeps
    the same width and the same in-group layout. The planner therefore works on the unit's
    `positions` (channels / g): removing position p removes channels p, p + n/g, p + 2n/g, ….
    """

    name: str  # the first of `convs` in module order; pruning it prunes the whole unit
    convs: list[str]
    channels: int  # original channel count
    groups: int = 1

    @property
    def positions(self) -> int:
        return self.channels // self.groups

    def expand(self, positions) -> np.ndarray:
        """The channel indices (sorted) of the given positions, in every block."""
        positions = np.asarray(positions, dtype=np.int64)
        return np.sort((np.arange(self.groups)[:, None] * self.positions + positions[None, :]).ravel())


@dataclass
class _SizedModule:
    """A module whose parameter count, FLOPs, memory and bytes moved follow from its current in/out channel counts."""

    name: str
    kind: str  # "conv", "depthwise", "linear" or "vector" (BN and other per-channel parameters)
    in_base: int
    out_base: int
    kernel: int = 1  # kernel volume K_h·K_w
    groups: int = 1
    positions: int = 0  # output positions per channel and call
    flop_positions: int = 0  # positions each weight is applied at per call (the input's, for a transposed conv)
    in_positions: int = 0  # input positions per input channel and call
    calls: int = 0  # forward calls in one pass (0: not a profiled layer)
    bias: bool = False
    vectors: int = 0  # per-channel parameter vectors ("vector" kind)
    in_terms: list[tuple[int, int]] = field(default_factory=list)  # (unit index, channels per unit position)
    out_terms: list[tuple[int, int]] = field(default_factory=list)

    def channels(self, removed: np.ndarray) -> tuple[int, int]:
        """(in, out) channel counts when unit u has lost removed[u] positions (terms count channels per position)."""
        out = self.out_base - sum(m * int(removed[u]) for u, m in self.out_terms)
        if self.kind in ("vector", "depthwise"):
            return out, out
        return self.in_base - sum(m * int(removed[u]) for u, m in self.in_terms), out

    def size(self, removed: np.ndarray) -> tuple[int, int, int, int]:
        """(params, FLOPs, memory bytes, bytes moved) when unit u has lost removed[u] channels."""
        inp, out = self.channels(removed)
        if self.kind == "vector":
            return self.vectors * out, 0, 0, 0
        per_filter = self.kernel if self.kind == "depthwise" else (inp // self.groups) * self.kernel
        weights = out * per_filter
        # A transposed conv's weight is (in, out/groups, k…) rather than (out, in/groups, k…); the
        # count out·(in/groups)·k equals in·(out/groups)·k, so one formula serves both layouts.
        params = weights + (out if self.bias else 0)
        outputs = out * self.positions * self.calls
        moved = traffic_bytes(params * self.calls, inp * self.in_positions * self.calls, outputs)
        return params, weights * self.flop_positions * self.calls, outputs * BYTES_PER_VALUE, moved


@dataclass(frozen=True)
class ExcludedUnit:
    """Coupled channels that cannot be pruned: `name` is the conv whose output channels they are."""

    name: str
    channels: int
    reason: str


class ChannelModel:
    """The exact complexity of a network as a function of the positions removed from each unit (channels,
    for a unit without groups; see `Unit`).

    `excluded` lists the coupled channel sets that are not units, each with the reason."""

    def __init__(self, units: list[Unit], modules: list[_SizedModule], constant_params: int,
                 excluded: list[ExcludedUnit] | None = None):
        self.units = units
        self.modules = modules
        self.constant_params = constant_params
        self.excluded = list(excluded or [])
        self._by_name = {m.name: m for m in modules}
        self.unit_convs = [[self._by_name[c] for c in u.convs] for u in units]

    def sizes(self, removed: np.ndarray) -> Sizes:
        """The network's params, FLOPs, memory and bytes moved when unit u has lost removed[u] positions."""
        params, flops, memory, moved = self.constant_params, 0, 0, 0
        for m in self.modules:
            p, f, b, t = m.size(removed)
            params, flops, memory, moved = params + p, flops + f, memory + b, moved + t
        return Sizes(params, flops, memory, moved)

    def totals(self, removed: np.ndarray) -> Totals:
        sizes = self.sizes(removed)
        return Totals(sizes.params, sizes.flops, sizes.memory_bytes)

    def bytes_moved(self, removed: np.ndarray) -> int:
        """Bytes the conv and linear layers read and write in one inference (`complexity.traffic_bytes`)."""
        return sum(m.size(removed)[3] for m in self.modules)

    def unit_sizes(self, removed: np.ndarray) -> Sizes:
        """Each unit's params, FLOPs, memory and bytes moved, summed over its convs (arrays over units): what a
        metric's cost turns into the units' complexities c_u."""
        per_unit = [[m.size(removed) for m in convs] for convs in self.unit_convs]
        return Sizes(*(np.array([sum(s[i] for s in sizes) for sizes in per_unit], dtype=np.float64)
                       for i in range(len(Sizes._fields))))

    def layers(self) -> list[_SizedModule]:
        """The conv and linear layers (those that run in the forward pass), in profile order."""
        return [m for m in self.modules if m.calls]


def build_graph(model: nn.Module, input_shape) -> tp.DependencyGraph:
    """Trace `model` on a zero input of `input_shape` (batch 1)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, torch.zeros(1, *input_shape, device=device), verbose=False)
    finally:
        model.train(was_training)


def find_units(model: nn.Module, profile: Profile, graph: tp.DependencyGraph | None = None) -> ChannelModel:
    """Every prunable unit of `model` and the arithmetic model of its sizes.

    Excluded (listed in the result's `excluded`, each with its reason): units whose channels
    reach the network output, units that touch a grouped transposed conv or fill only part of a
    grouped conv's channels, and units that touch a parameterised layer type the size model does
    not know or map unevenly onto one. Units around a grouped (non-depthwise) conv are pruned
    group by group (`Unit.groups`).
    """
    graph = graph or build_graph(model, profile.input_shape)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    layers = {layer.name: layer for layer in profile.layers}

    sized: dict[str, _SizedModule] = {}
    for layer in profile.layers:
        module = model.get_submodule(layer.name)
        depthwise = layer.kind == "conv" and layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels
        flop_positions = layer.flop_positions or layer.positions
        sized[layer.name] = _SizedModule(
            name=layer.name, kind="depthwise" if depthwise else layer.kind, in_base=layer.in_channels,
            out_base=layer.out_channels, kernel=kernel_volume(layer), groups=layer.groups,
            positions=layer.positions, flop_positions=flop_positions, in_positions=layer.input_positions,
            calls=layer.flops // max(1, module.weight.numel() * flop_positions),
            bias=getattr(module, "bias", None) is not None)

    units: list[Unit] = []
    excluded: list[ExcludedUnit] = []
    for group in graph.get_all_groups(root_module_types=CONV_TYPES):
        n_root = len(group[0].idxs)
        root = names.get(group[0].dep.target.module, "?")
        convs, couplings, reason, unit_groups = [], [], None, 1
        for dep, idxs in group:
            module = dep.target.module
            is_in = dep.handler in _IN_CHANNEL_FNS
            if isinstance(module, tp.ops._OutputOp) or (not dep.target.outputs and not is_in):
                reason = "they reach the network output"
                break
            name = names.get(module)
            if name is None or not any(True for _ in module.parameters(recurse=False)):
                continue  # shape-only ops (add, flatten, pooling)
            if len(idxs) % n_root:
                reason = f"they map unevenly onto {name}"
                break
            if name not in sized and not _add_vector_module(sized, name, module):
                reason = f"they feed {name} ({type(module).__name__}), a layer whose size cdprune cannot model"
                break
            entry = sized[name]
            if entry.kind == "conv" and entry.groups > 1:
                what = "they are the output of" if name == root else "they feed"
                if getattr(module, "transposed", False):
                    # torch-pruning slices a grouped transposed conv's weight as if it were a plain conv's.
                    reason = f"{what} the grouped transposed conv {name} (groups={entry.groups}), which cdprune does not prune"
                    break
                width = entry.in_base if is_in else entry.out_base
                if n_root != width or [int(i) for i in idxs] != list(range(width)):
                    # Equal removals per group need the unit to span the conv's channels exactly.
                    reason = f"{what} only part of the grouped conv {name}'s channels (groups={entry.groups})"
                    break
                unit_groups = math.lcm(unit_groups, entry.groups)
            couplings.append((name, is_in, len(idxs) // n_root))
            if not is_in and name in layers and layers[name].kind == "conv":
                convs.append(name)
        if reason is None and not convs:
            reason = "no conv produces them"
        if reason is not None:
            excluded.append(ExcludedUnit(root, n_root, reason))
            continue
        convs.sort(key=order.__getitem__)
        unit_index = len(units)
        units.append(Unit(name=convs[0], convs=convs, channels=n_root, groups=unit_groups))
        for name, is_in, mult in couplings:
            (sized[name].in_terms if is_in else sized[name].out_terms).append((unit_index, mult * unit_groups))

    # Units in module order make plans readable and independent of graph traversal order.
    permutation = sorted(range(len(units)), key=lambda i: order[units[i].name])
    remap = {old: new for new, old in enumerate(permutation)}
    units = [units[i] for i in permutation]
    for m in sized.values():
        m.in_terms = [(remap[u], k) for u, k in m.in_terms]
        m.out_terms = [(remap[u], k) for u, k in m.out_terms]
    excluded.sort(key=lambda e: order.get(e.name, len(order)))

    modules = list(sized.values())
    base = sum(m.size(np.zeros(len(units)))[0] for m in modules)
    constant = profile.totals.params - base
    channel_model = ChannelModel(units, modules, constant, excluded)
    dense = np.zeros(len(units))
    if not math.isclose(channel_model.totals(dense).flops, profile.totals.flops) or \
            channel_model.bytes_moved(dense) != profile.bytes_moved:
        raise CdpruneError("internal size model disagrees with the profile; please report this model")
    return channel_model


def _add_vector_module(sized: dict, name: str, module: nn.Module) -> bool:
    """BN, GroupNorm, PReLU…: every parameter is a vector with one entry per channel."""
    params = list(module.parameters(recurse=False))
    if not params or any(p.dim() != 1 or p.numel() != params[0].numel() for p in params):
        return False
    sized[name] = _SizedModule(name=name, kind="vector", in_base=params[0].numel(), out_base=params[0].numel(),
                               vectors=len(params))
    return True


def require_units(model_units: ChannelModel) -> None:
    if not model_units.units:
        why = "; ".join(sorted({e.reason.split(" (")[0] for e in model_units.excluded})) or "it has no conv"
        raise CdpruneError(f"the model has no prunable conv layer ({why}); nothing to prune", "see "
                           "'cdprune prune --verbose' for every excluded unit")


@dataclass(frozen=True)
class UnitsReport(Record):
    """Where a model can be pruned: its units, and every coupled channel set left out with the reason."""

    input_shape: tuple[int, ...]
    units: tuple[Unit, ...]
    excluded: tuple[ExcludedUnit, ...]


def prunable_units(model: nn.Module, input_shape=(3, 32, 32)) -> UnitsReport:
    """The units `make_plan` draws from at `input_shape`, and the excluded ones with their reasons."""
    input_shape = tuple(int(s) for s in input_shape)
    channels = find_units(model, profile_model(model, input_shape))
    return UnitsReport(input_shape, tuple(channels.units), tuple(channels.excluded))
