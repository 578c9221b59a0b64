"""Per-layer latency table for the latency-aware mode `la`.

Each conv and linear layer is timed in isolation on this device, at a grid of
input- and output-channel fractions (25/50/75/100 % of its original width),
once per model architecture, input shape, device and thread count; the
table is cached as JSON (`--refresh` rebuilds it). Each entry is the fastest
of repeated runs, which other processes on the machine disturb least, so the
table estimates uncontended latency. A pruned layer's latency
is read off the grid by bilinear interpolation. The network's latency is the
sum of its layers' scaled by one calibration factor, the dense network's
measured latency over the sum of its layers' (BN, activations and framework
overhead are thereby spread in proportion).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..complexity import CONV_TYPES, architecture_id
from ..errors import CdpruneError
from ..io import atomic_write_json
from .latency import cpu_model_name, measure_latency

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def cache_dir() -> Path:
    """$CDPRUNE_CACHE, else $XDG_CACHE_HOME/cdprune, else ~/.cache/cdprune."""
    if os.environ.get("CDPRUNE_CACHE"):
        return Path(os.environ["CDPRUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cdprune"


@dataclass
class LatencyTable:
    """Measured milliseconds per layer on a channel-fraction grid, plus the calibration to the whole network."""

    key: dict
    grids: dict[str, list[list[float]]]  # layer -> [in fraction][out fraction] -> ms
    network_ms: float  # measured, dense, batch 1
    layer_sum_ms: float  # sum of the dense layers' isolated latencies

    @property
    def calibration(self) -> float:
        return self.network_ms / self.layer_sum_ms if self.layer_sum_ms else 1.0

    def layer_ms(self, name: str, in_fraction: float, out_fraction: float) -> float:
        grid = np.asarray(self.grids[name])
        rows = np.array([_interp(in_fraction, row) for row in grid.T])  # over input fractions, per output column
        return max(0.0, _interp(out_fraction, rows))

    def to_dict(self) -> dict:
        return {"key": self.key, "fractions": list(FRACTIONS), "grids": self.grids, "network_ms": self.network_ms,
                "layer_sum_ms": self.layer_sum_ms}


def _interp(x: float, values) -> float:
    """Piecewise-linear through FRACTIONS, extrapolated linearly beyond the first and last points."""
    xs, ys = np.asarray(FRACTIONS), np.asarray(values, dtype=float)
    if x <= xs[0]:
        return float(ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]))
    if x >= xs[-1]:
        return float(ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
    return float(np.interp(x, xs, ys))


def latency_table(model: nn.Module, input_shape, refresh: bool = False, progress: bool = False) -> LatencyTable:
    """The cached table for `model` at `input_shape` on this CPU, built (tens of seconds) when missing.

    `model` is not changed: the timing runs on a float32 copy on the CPU in eval mode. The cache key
    names the CPU model, since two CPUs of one architecture (x86_64) can differ several-fold in speed.
    """
    # "grid" names how grids are timed: tables from before grouped convs were pruned differ for them.
    key = {"grid": 2, "architecture": architecture_id(model), "input_shape": list(input_shape), "device": "cpu",
           "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
           "cpu_model": cpu_model_name(), "fractions": list(FRACTIONS)}
    path = cache_dir() / "latency" / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20] + ".json")
    if path.exists() and not refresh:
        try:
            data = json.loads(path.read_text())
            if data["key"] == key:
                return LatencyTable(key, data["grids"], float(data["network_ms"]), float(data["layer_sum_ms"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is simply rebuilt
    table = _build(model, tuple(input_shape), key, progress)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, table.to_dict())
    except OSError:
        pass  # an unwritable cache only costs a rebuild next time
    return table


def _build(model: nn.Module, input_shape, key: dict, progress: bool) -> LatencyTable:
    # A copy: eval mode, the move to the CPU and float32 must not reach the caller's model.
    model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    inputs: dict[str, tuple] = {}
    layers = {n: m for n, m in model.named_modules() if isinstance(m, CONV_TYPES + (nn.Linear,))}

    def hook(name):
        def record(module, args, output):
            inputs.setdefault(name, tuple(args[0].shape[1:]))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise CdpruneError(f"the model rejects input shape {input_shape} ({str(exc).splitlines()[0][:120]})") from None
    finally:
        for h in handles:
            h.remove()

    from tqdm import tqdm

    grids = {}
    for name in tqdm(list(inputs), desc="timing layers", disable=not progress, file=None):
        grids[name] = _time_grid(layers[name], inputs[name])
    layer_sum = sum(g[-1][-1] for g in grids.values())
    network = measure_latency(model, input_shape, batch=1, warmup=5, min_repeats=20, min_time_s=0.5).min_ms
    return LatencyTable(key, grids, network, layer_sum)


def _time_grid(layer: nn.Module, input_shape: tuple) -> list[list[float]]:
    """ms at every (in fraction, out fraction); depthwise convs are timed along the diagonal only, grouped
    convs at widths rounded to multiples of their group count, grouped transposed convs at full width."""
    conv = not isinstance(layer, nn.Linear)
    c_in, c_out = (layer.in_channels, layer.out_channels) if conv else (layer.in_features, layer.out_features)
    depthwise = conv and layer.groups > 1 and layer.groups == c_in == c_out
    grid = []
    for fi in FRACTIONS:
        row = []
        for fo in FRACTIONS:
            if conv and layer.groups > 1 and not depthwise and layer.transposed:
                fi_, fo_ = 1.0, 1.0  # grouped transposed convs are never pruned
            elif depthwise:
                fi_ = fo_ = fo
            else:
                fi_, fo_ = fi, fo
            i, o = max(1, round(fi_ * c_in)), max(1, round(fo_ * c_out))
            if conv and layer.groups > 1 and not depthwise:  # pruned group by group: widths stay multiples
                g = layer.groups
                i, o = max(g, round(fi_ * c_in / g) * g), max(g, round(fo_ * c_out / g) * g)
            if not conv:
                module = nn.Linear(i, o, bias=layer.bias is not None)
            else:
                groups = o if depthwise else layer.groups
                i = o if depthwise else i
                # Keywords: a transposed conv's positional arguments differ (output_padding comes before groups).
                extra = {"output_padding": layer.output_padding} if layer.transposed else {}
                module = type(layer)(i, o, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                                     dilation=layer.dilation, groups=groups, bias=layer.bias is not None,
                                     padding_mode=layer.padding_mode, **extra)
            shape = (i, *input_shape[1:]) if conv else (*input_shape[:-1], i)
            row.append(measure_latency(module, shape, batch=1, warmup=3, min_repeats=15, min_time_s=0.03).min_ms)
        grid.append(row)
    return grid
