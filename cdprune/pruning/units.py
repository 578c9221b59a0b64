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
from ..errors import CdpruneError

_IN_CHANNEL_FNS = {tp.pruner.function.prune_conv_in_channels, tp.pruner.function.prune_linear_in_channels}


@dataclass
class Unit:
    """Channels removed together. `convs` are the convs whose output channels are these channels."""

    name: str  # the first of `convs` in module order; pruning it prunes the whole unit
    convs: list[str]
    channels: int  # original channel count


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
    in_positions: int = 0  # input positions per input channel and call
    calls: int = 0  # forward calls in one pass (0: not a profiled layer)
    bias: bool = False
    vectors: int = 0  # per-channel parameter vectors ("vector" kind)
    in_terms: list[tuple[int, int]] = field(default_factory=list)  # (unit index, channels per unit channel)
    out_terms: list[tuple[int, int]] = field(default_factory=list)

    def channels(self, removed: np.ndarray) -> tuple[int, int]:
        """(in, out) channel counts when unit u has lost removed[u] channels."""
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
        params = weights + (out if self.bias else 0)
        outputs = out * self.positions * self.calls
        moved = traffic_bytes(params * self.calls, inp * self.in_positions * self.calls, outputs)
        return params, weights * self.positions * self.calls, outputs * BYTES_PER_VALUE, moved


class ChannelModel:
    """The exact complexity of a network as a function of the channels removed from each unit."""

    _INDEX = {"params": 0, "flops": 1, "memory": 2, "bytes": 3}

    def __init__(self, units: list[Unit], modules: list[_SizedModule], constant_params: int):
        self.units = units
        self.modules = modules
        self.constant_params = constant_params
        self._by_name = {m.name: m for m in modules}
        self.unit_convs = [[self._by_name[c] for c in u.convs] for u in units]

    def totals(self, removed: np.ndarray) -> Totals:
        params, flops, memory = self.constant_params, 0, 0
        for m in self.modules:
            p, f, b, _ = m.size(removed)
            params, flops, memory = params + p, flops + f, memory + b
        return Totals(params, flops, memory)

    def bytes_moved(self, removed: np.ndarray) -> int:
        """Bytes the conv and linear layers read and write in one inference (`complexity.traffic_bytes`)."""
        return sum(m.size(removed)[3] for m in self.modules)

    def unit_complexity(self, removed: np.ndarray, metric: str) -> np.ndarray:
        """c_u: the metric ("params", "flops", "memory" or "bytes" moved) summed over the convs of each unit."""
        index = self._INDEX[metric]
        return np.array([sum(m.size(removed)[index] for m in convs) for convs in self.unit_convs], dtype=np.float64)

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

    Excluded: units whose channels reach the network output, units that touch a
    grouped (non-depthwise) conv or a parameterised layer type the size model
    does not know.
    """
    graph = graph or build_graph(model, profile.input_shape)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    layers = {layer.name: layer for layer in profile.layers}

    sized: dict[str, _SizedModule] = {}
    for layer in profile.layers:
        module = model.get_submodule(layer.name)
        depthwise = layer.kind == "conv" and layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels
        sized[layer.name] = _SizedModule(
            name=layer.name, kind="depthwise" if depthwise else layer.kind, in_base=layer.in_channels,
            out_base=layer.out_channels, kernel=kernel_volume(layer), groups=layer.groups,
            positions=layer.positions, in_positions=layer.input_positions, calls=layer.flops // max(1, module.weight.numel() * layer.positions),
            bias=getattr(module, "bias", None) is not None)

    units: list[Unit] = []
    for group in graph.get_all_groups(root_module_types=CONV_TYPES):
        n_root = len(group[0].idxs)
        convs, couplings, usable = [], [], True
        for dep, idxs in group:
            module = dep.target.module
            is_in = dep.handler in _IN_CHANNEL_FNS
            if isinstance(module, tp.ops._OutputOp) or (not dep.target.outputs and not is_in):
                usable = False  # these channels shape the network's output
                break
            name = names.get(module)
            if name is None or not any(True for _ in module.parameters(recurse=False)):
                continue  # shape-only ops (add, flatten, pooling)
            if len(idxs) % n_root:
                usable = False
                break
            if name not in sized and not _add_vector_module(sized, name, module):
                usable = False
                break
            entry = sized[name]
            if entry.kind == "conv" and entry.groups > 1:
                usable = False  # grouped convs would lose their divisibility
                break
            couplings.append((name, is_in, len(idxs) // n_root))
            if not is_in and name in layers and layers[name].kind == "conv":
                convs.append(name)
        if usable and convs:
            convs.sort(key=order.__getitem__)
            unit_index = len(units)
            units.append(Unit(name=convs[0], convs=convs, channels=n_root))
            for name, is_in, mult in couplings:
                (sized[name].in_terms if is_in else sized[name].out_terms).append((unit_index, mult))

    # Units in module order make plans readable and independent of graph traversal order.
    permutation = sorted(range(len(units)), key=lambda i: order[units[i].name])
    remap = {old: new for new, old in enumerate(permutation)}
    units = [units[i] for i in permutation]
    for m in sized.values():
        m.in_terms = [(remap[u], k) for u, k in m.in_terms]
        m.out_terms = [(remap[u], k) for u, k in m.out_terms]

    modules = list(sized.values())
    base = sum(m.size(np.zeros(len(units)))[0] for m in modules)
    constant = profile.totals.params - base
    channel_model = ChannelModel(units, modules, constant)
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
        raise CdpruneError("the model has no prunable conv layer (every conv shapes the output or is grouped); nothing to prune")
