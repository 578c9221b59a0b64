"""Per-layer latency tables for the latency-aware mode `la` and latency budgets (docs/design.md, §5.3).

Each conv and linear layer is timed in isolation on one device, at a grid of input- and
output-channel fractions (25/50/75/100 % of its original width), in one runtime at one thread
count. Each entry is the fastest of repeated runs, which other processes on the machine disturb
least, so the table estimates uncontended latency. A pruned layer's latency is read off the grid
by bilinear interpolation. Each layer's own time is its isolated time less one call's fixed cost in the
runtime (timed on an identity model). The network's latency is a straight line in the sum of its layers'
own times, a + b·Σ, through two measured points: the dense network and a copy with every prunable unit at
half its channels (`calibration_point`, which the caller that can prune builds). `a` is the time that does
not shrink with the layers (pooling, reshapes, int8's quantise and dequantise steps, the call itself).
Without a usable second point, one factor scales the layers' own times to the dense network less one
call, and the call's cost is added once (docs/design.md, §5.3).

- torch tables time the bare conv or linear layer, as eager PyTorch runs it; BN, activations and
  framework overhead are spread in proportion by the calibration.
- onnxruntime tables time each layer as it is deployed: the conv with the BatchNorm that follows it
  (which ONNX Runtime folds into the conv) and the activation module after that (which it fuses),
  exported to ONNX and run in an ONNX Runtime session with the table's thread count.

Which runtimes time tables, and how, is their row in `measure/runtimes.py` (`module_step`,
`layers_as_deployed`, `table_precisions`). An int8 table (onnxruntime) quantises every layer variant and
the network as `export --int8` does (measure/quantize.py). The dense network is timed by the protocol
of measure/timing.py and recorded as its median; grid entries stay the fastest run, the figure that
is stable for microsecond layers.

A table is a portable JSON file (`LatencyTable.save`, format TABLE_FORMAT): `cdprune latency-table`
measures one on the target device and `make_plan(..., latency_table=...)` plans with it on another
machine. Without one, `latency_table` builds a table for this machine and caches it; the cache key
names the CPU model and the runtime, since two CPUs of one architecture (x86_64) can differ
several-fold in speed and two runtimes run the same layer differently.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import numbers
import os
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from ..complexity import CONV_TYPES, architecture_id
from ..errors import CdpruneError
from ..storage import atomic_write_json, atomic_write_text, load_json_file
from .latency import cpu_model_name, torch_threads
from .runtimes import RUNTIMES, get_runtime, table_runtimes
from .timing import time_calls

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
TABLE_FORMAT = "cdprune-latency-table/1"
DEFAULT_REPEATS = 15  # timed runs per grid entry, at least…
DEFAULT_MIN_TIME_S = 0.03  # …and at least this long
CALIBRATION_FRACTION = 0.5  # the second calibration point: every prunable unit at this fraction of its channels
NETWORK_TIME_FACTOR = 16  # the dense network is timed at least this many times longer than one grid entry…
NETWORK_TIME_LIMIT = 4  # …and, while its median's interval is wider than ±3 %, up to this many times longer still
# Element-wise activation modules that ONNX Runtime fuses into the conv before them (or runs right
# after it); a table for onnxruntime times them with their layer.
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.GELU,
               nn.ELU, nn.Mish)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LAYERS = CONV_TYPES + (nn.Linear,)


def cache_dir() -> Path:
    """$CDPRUNE_CACHE, else $XDG_CACHE_HOME/cdprune, else ~/.cache/cdprune."""
    if os.environ.get("CDPRUNE_CACHE"):
        return Path(os.environ["CDPRUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cdprune"


def runtime_version(runtime: str) -> str:
    """'torch 2.13.0', 'onnxruntime 1.20.1': what a table's timings depend on besides the CPU."""
    return get_runtime(check_runtime(runtime)).version()


def check_runtime(runtime) -> str:
    """`runtime`, when it is one that times per-layer latency tables (measure/runtimes.py)."""
    names = table_runtimes()
    if runtime not in names:
        what = f"runtime '{runtime}' cannot time per-layer latency tables" if runtime in RUNTIMES else \
            f"unknown runtime '{runtime}'"
        raise CdpruneError(f"{what}", f"choose one of {', '.join(names)} (--runtime)")
    return runtime


class Fit(NamedTuple):
    """How a table turns the layers' own times into the network's: network ≈ fixed_ms + scale · Σ own.
    `fallback`: why the one-point calibration is used despite a second point ("" when it is not)."""

    fixed_ms: float
    scale: float
    points: int  # 1: calibrated on the dense network alone; 2: on the dense and the half-width network
    fallback: str = ""


@dataclass(frozen=True)
class LatencyTable:
    """Measured milliseconds per layer on a channel-fraction grid, plus the calibration to the whole network.

    It belongs to one architecture (`architecture_id`) at one input shape, measured in one runtime
    with one thread count on one CPU (`cpu_model`).
    """

    architecture: str
    input_shape: tuple[int, ...]
    runtime: str  # "torch" or "onnxruntime"
    runtime_version: str  # "torch 2.13.0", "onnxruntime 1.20.1"
    threads: int
    cpu_model: str  # /proc/cpuinfo's model name, or what the platform gives (measure.latency.cpu_model_name)
    machine: str  # platform.machine(): x86_64, aarch64, …
    grids: dict[str, list[list[float]]]  # layer -> [in fraction][out fraction] -> ms
    network_ms: float  # measured, dense, batch 1
    layer_sum_ms: float  # sum of the dense layers' isolated latencies
    layers: dict[str, str] = field(default_factory=dict)  # layer -> what was timed: "conv", "conv+bn+relu", …
    model: str | None = None  # the model reference it was measured for, where known
    torch_version: str = torch.__version__
    repeats: int = DEFAULT_REPEATS
    min_time_s: float = DEFAULT_MIN_TIME_S
    precision: str = "fp32"  # "int8": every layer and the network quantised as `export --int8` quantises
    # One call's fixed cost in the runtime (an identity model at the input's shape, timed like a grid entry):
    # every isolated layer timing pays it once, the network once in all. 0 in tables from before it was kept.
    overhead_ms: float = 0.0
    # How the dense network was timed (measure/timing.py): p50, p90, n, ci_rel, converged, noisy, noise.
    network_timing: dict | None = field(default=None, compare=False)
    # The second measured point: {"network_ms": the half-width network's median, "fractions": {layer: [in, out]}
    # as the planner prices it, "network_timing": how it was timed}. None in tables from before it was kept.
    calibration_point: dict | None = None
    source: str = field(default="", compare=False)  # where it came from: a file, or this machine's cache

    @functools.cached_property
    def _overhead(self) -> float:
        """The per-call overhead the estimate takes out, or 0 where the network would not leave enough."""
        return self.overhead_ms if 0 < self.overhead_ms < self.network_ms else 0.0

    @functools.cached_property
    def calibration(self) -> float:
        """The one-point scale from the layers' own times (each less one call's overhead) to the network's, less
        its one call."""
        rest = self.own_sum_ms()
        return (self.network_ms - self._overhead) / rest if rest > 0 else 1.0

    def own_ms(self, name: str, in_fraction: float, out_fraction: float) -> float:
        """A layer's own time at these fractions: its isolated time less the call's overhead that timing paid."""
        return max(0.0, self.layer_ms(name, in_fraction, out_fraction) - self._overhead)

    def own_sum_ms(self, fractions: dict | None = None) -> float:
        """The layers' own times summed, each at its (in, out) fractions in `fractions` (full width if absent)."""
        fractions = fractions or {}
        return sum(self.own_ms(name, *fractions.get(name, (1.0, 1.0))) for name in self.grids)

    @functools.cached_property
    def fit(self) -> Fit:
        """The line network ≈ fixed_ms + scale · Σ own through the dense network and the calibration point;
        the one-point calibration (the call's overhead fixed, the rest in proportion) without a point, or where
        the line would be degenerate."""
        one_point = Fit(self._overhead, self.calibration, 1)
        if self.calibration_point is None:
            return one_point
        dense, half = self.own_sum_ms(), self.own_sum_ms(self.calibration_point["fractions"])
        measured = self.calibration_point["network_ms"]
        if dense <= half:
            return one_point._replace(fallback="the layers at half width are not faster than dense")
        scale = (self.network_ms - measured) / (dense - half)
        fixed = self.network_ms - scale * dense
        if scale <= 0:
            return one_point._replace(fallback="the half-width network is not faster than the dense one")
        if not 0 <= fixed <= self.network_ms:
            return one_point._replace(fallback=f"the fixed part would be {fixed:.3f} ms, outside 0..network_ms")
        return Fit(fixed, scale, 2)

    def estimated_layer_ms(self, name: str, in_fraction: float, out_fraction: float) -> float:
        """One layer's share of the network's estimated time: its own time at these fractions, scaled, plus an
        equal share of the fixed part (`fit`). Over the dense layers these add up to network_ms exactly, and, with
        a calibration point, over its layers to the half-width network's measured time; a pruned layer sheds its
        compute but not the fixed part."""
        fit = self.fit
        return fit.scale * self.own_ms(name, in_fraction, out_fraction) + fit.fixed_ms / len(self.grids)

    @property
    def calibrated_to(self) -> str:
        """What the estimate is calibrated to, in words (a plan's latency source)."""
        if self.fit.points == 2:
            return "calibrated to the measured dense and half-width networks"
        return "calibrated to the measured dense network"

    @property
    def key(self) -> dict:
        """What the timings depend on: the cache key on the machine that measured them."""
        return table_key(self.architecture, self.input_shape, self.runtime, self.runtime_version, self.threads,
                         self.cpu_model, self.machine, self.torch_version, self.precision)

    def describe(self) -> str:
        """'onnxruntime 1.20.1, int8, 1 thread, AMD EPYC 7B13': where the times come from, and, where a calibration
        point could not be used, why."""
        fallback = f", one-point calibration ({self.fit.fallback})" if self.fit.fallback else ""
        return (f"{self.runtime_version}, {self.precision}, {self.threads} thread{'s' if self.threads != 1 else ''}, "
                f"{self.cpu_model}{fallback}")

    def layer_ms(self, name: str, in_fraction: float, out_fraction: float) -> float:
        grid = np.asarray(self.grids[name])
        rows = np.array([_interp(in_fraction, row) for row in grid.T])  # over input fractions, per output column
        return max(0.0, _interp(out_fraction, rows))

    def to_dict(self) -> dict:
        return {"format": TABLE_FORMAT, "model": self.model, "architecture": self.architecture,
                "input_shape": list(self.input_shape), "runtime": self.runtime,
                "runtime_version": self.runtime_version, "precision": self.precision, "threads": self.threads,
                "cpu_model": self.cpu_model,
                "machine": self.machine, "torch_version": self.torch_version, "fractions": list(FRACTIONS),
                "repeats": self.repeats, "min_time_s": self.min_time_s, "network_ms": self.network_ms,
                "layer_sum_ms": self.layer_sum_ms, "overhead_ms": self.overhead_ms, "network_timing": self.network_timing,
                "calibration_point": self.calibration_point, "layers": self.layers, "grids": self.grids}

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Read a table written by `save` (`cdprune latency-table`); a missing or invalid file is one CdpruneError."""
        data = load_json_file(path, "latency table", missing=f"measure one on the device with "
                              f"'cdprune latency-table MODEL --out {path}'",
                              fix="measure it again with 'cdprune latency-table'")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data, source: str = "latency table") -> "LatencyTable":
        def bad(why: str) -> CdpruneError:
            return CdpruneError(f"{source} is not a valid cdprune latency table ({why})", "measure it again with "
                                "'cdprune latency-table'")

        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise bad(f"format is not {TABLE_FORMAT}")
        if data.get("fractions") != list(FRACTIONS):
            raise bad(f"its grid is not at the fractions {list(FRACTIONS)}")
        try:
            grids = {str(k): [[_ms(v) for v in row] for row in grid] for k, grid in data["grids"].items()}
            table = cls(architecture=_text(data["architecture"]),
                        input_shape=tuple(_count(s) for s in data["input_shape"]),
                        runtime=_text(data["runtime"]), runtime_version=_text(data["runtime_version"]),
                        threads=_count(data["threads"]), cpu_model=_text(data["cpu_model"]),
                        machine=_text(data["machine"]), grids=grids, network_ms=_ms(data["network_ms"]),
                        layer_sum_ms=_ms(data["layer_sum_ms"]),
                        layers={str(k): _text(v) for k, v in (data.get("layers") or {}).items()},
                        model=data.get("model") if isinstance(data.get("model"), str) else None,
                        torch_version=_text(data.get("torch_version", "")),
                        repeats=_count(data.get("repeats", DEFAULT_REPEATS)),
                        min_time_s=_ms(data.get("min_time_s", DEFAULT_MIN_TIME_S)),
                        precision=_text(data.get("precision", "fp32")),  # files before int8 tables were fp32
                        overhead_ms=_ms(data.get("overhead_ms", 0.0)),
                        network_timing=data["network_timing"] if isinstance(data.get("network_timing"), dict) else None,
                        calibration_point=calibration_point(data.get("calibration_point"), grids),
                        source=source)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad(f"missing or malformed field {exc}") from None
        if table.runtime not in table_runtimes():
            raise bad(f"unknown runtime {table.runtime!r}")
        if table.precision not in get_runtime(table.runtime).table_precisions:
            raise bad(f"precision {table.precision!r} is not one {table.runtime} tables time")
        if not table.grids or any(len(g) != len(FRACTIONS) or any(len(r) != len(FRACTIONS) for r in g)
                                  for g in table.grids.values()):
            raise bad(f"every layer needs a {len(FRACTIONS)}×{len(FRACTIONS)} grid")
        if table.network_ms <= 0 or table.layer_sum_ms <= 0:
            raise bad("its network and layer-sum times must be positive")
        return table

    def check_fits(self, model: nn.Module, input_shape, runtime: str | None, layers, precision: str | None = None) -> None:
        """Refuse, in one line, a table measured for another architecture, input shape, runtime or precision.

        layers: the names of the conv and linear layers that planning reads off the table.
        """
        where = self.source or "the latency table"
        spec = getattr(model, "cdprune_spec", None) or {}
        mine = spec.get("name") or type(model).__name__
        shape = ",".join(map(str, input_shape))
        kwargs = dict(spec.get("kwargs") or {})
        classes = f" --num-classes {kwargs.pop('num_classes')}" if "num_classes" in kwargs else ""
        kwargs.pop("in_channels", None)
        fix = (f"measure one on the device with 'cdprune latency-table {mine}{classes} --input {shape} --runtime "
               f"{runtime or self.runtime} --precision {precision or self.precision} --threads {self.threads} "
               f"--out FILE'")
        if self.architecture != architecture_id(model):
            given = f" --model-args '{json.dumps(kwargs)}'" if kwargs else ""
            raise CdpruneError(f"{where} was measured for another architecture ({self.model or self.architecture}) "
                               f"than this {mine} with {spec.get('kwargs') or 'its arguments'}", "its classes "
                               f"(--num-classes or --data), channels (--input) or model arguments (--model-args) "
                               f"differ; {fix[:-1]}{given}'")
        if tuple(self.input_shape) != tuple(input_shape):
            raise CdpruneError(f"{where} was measured for input {','.join(map(str, self.input_shape))}, not {shape}: "
                               f"{fix}")
        if runtime is not None and runtime != self.runtime:
            raise CdpruneError(f"{where} was measured in {self.runtime}, but the plan is for {runtime}: {fix}, "
                               f"or plan for {self.runtime} (--runtime)")
        if precision is not None and precision != self.precision:
            raise CdpruneError(f"{where} times {self.precision} layers, but the plan is for {precision}: {fix}, "
                               f"or plan for {self.precision} (--precision {self.precision})")
        missing = sorted(set(layers) - set(self.grids))
        if missing:
            raise CdpruneError(f"{where} has no times for layer {missing[0]} of this model", fix)


def calibration_point(data, layers) -> dict | None:
    """A table's calibration point checked ({"network_ms", "fractions", "network_timing"}), or None when absent."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"calibration_point {data!r} is not an object")
    measured = _ms(data["network_ms"])
    if measured <= 0:
        raise ValueError("calibration_point's network_ms must be positive")
    fractions = {}
    for name, pair in data["fractions"].items():
        if name not in layers:
            raise ValueError(f"calibration_point names layer {name!r}, which has no grid")
        fractions[str(name)] = check_fractions(pair)
    point = {"network_ms": measured, "fractions": fractions}
    if isinstance(data.get("network_timing"), dict):
        point["network_timing"] = data["network_timing"]
    return point


def check_fractions(pair) -> list[float]:
    """[in, out]: a layer's channel fractions, each in (0, 1]."""
    fractions = [float(_ms(f)) for f in pair]
    if len(fractions) != 2 or not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"{pair!r} is not an (in, out) pair of fractions in (0, 1]")
    return fractions


def _no_constant(token: str):
    raise ValueError(f"{token} is not a number JSON allows")


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{value!r} is not a positive whole number")
    return int(value)


def _ms(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not a finite number >= 0")
    return float(value)


def _interp(x: float, values) -> float:
    """Piecewise-linear through FRACTIONS, extrapolated linearly beyond the first and last points."""
    xs, ys = np.asarray(FRACTIONS), np.asarray(values, dtype=float)
    if x <= xs[0]:
        return float(ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]))
    if x >= xs[-1]:
        return float(ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
    return float(np.interp(x, xs, ys))


def table_key(architecture: str, input_shape, runtime: str, version: str, threads: int, cpu_model: str,
              machine: str, torch_version: str, precision: str = "fp32") -> dict:
    return {"architecture": architecture, "input_shape": list(input_shape), "device": "cpu", "runtime": runtime,
            "runtime_version": version, "precision": precision, "threads": threads, "torch": torch_version,
            "machine": machine, "cpu_model": cpu_model, "fractions": list(FRACTIONS)}


def check_precision(runtime: str, precision) -> str:
    """`precision`, when `runtime`'s latency tables time it (int8: onnxruntime only)."""
    allowed = get_runtime(check_runtime(runtime)).table_precisions
    if precision not in allowed:
        others = [name for name in table_runtimes() if precision in get_runtime(name).table_precisions]
        fix = f"use --runtime {' or '.join(others)} for {precision}" if others else \
            f"choose {' or '.join(allowed)} (--precision)"
        raise CdpruneError(f"{runtime} latency tables time {' or '.join(allowed)} layers, not {precision!r}", fix)
    return precision


def check_timing(threads, repeats, min_time_s) -> None:
    """Refuse thread counts, repeats and times that cannot measure anything, before any work."""
    for name, flag, value in (("threads", "--threads", threads), ("repeats", "--repeats", repeats)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise CdpruneError(f"{name} ({flag}) must be a whole number of at least 1, got {value!r}")
    if isinstance(min_time_s, bool) or not isinstance(min_time_s, numbers.Real) or not math.isfinite(min_time_s) \
            or min_time_s < 0:
        raise CdpruneError(f"min_time_s (--min-time) must be a finite number of seconds >= 0, got {min_time_s!r}")


def latency_table(model: nn.Module, input_shape, refresh: bool = False, progress: bool = False, *,
                  runtime: str = "torch", threads: int | None = None, precision: str = "fp32",
                  calibration: Callable[[], tuple[nn.Module, dict]] | None = None) -> LatencyTable:
    """The cached table for `model` at `input_shape` on this CPU, built (tens of seconds) when missing.

    threads: the runtime's intra-op threads (default: torch's current thread count). `model` is not
    changed. `refresh` rebuilds the table; a damaged cache entry is rebuilt, and an unwritable cache
    only costs a rebuild next time.
    calibration: called only when a table is built, returns (the half-width copy of `model`, its layers'
    fractions), as `build_latency_table`'s calibration_model and calibration_fractions; a cached table
    without a calibration point is then rebuilt with one.
    """
    check_precision(runtime, precision)
    check_timing(threads, DEFAULT_REPEATS, DEFAULT_MIN_TIME_S)
    threads = threads or torch.get_num_threads()
    key = table_key(architecture_id(model), tuple(input_shape), runtime, runtime_version(runtime), threads,
                    cpu_model_name(), platform.machine(), torch.__version__, precision)
    path = cache_dir() / "latency" / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20] + ".json")
    if path.exists() and not refresh:
        try:
            table = LatencyTable.from_dict(json.loads(path.read_text()), source=f"the latency cache ({path})")
            if table.key == key and (calibration is None or table.calibration_point is not None):
                return table
        except (OSError, ValueError, CdpruneError):
            pass  # a damaged cache entry is simply rebuilt
    half, fractions = calibration() if calibration is not None else (None, None)
    table = build_latency_table(model, input_shape, runtime, threads, progress=progress, precision=precision,
                                calibration_model=half, calibration_fractions=fractions)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, table.to_dict())
    except OSError:
        pass  # an unwritable cache only costs a rebuild next time
    return replace(table, source=f"the latency cache ({path})")


def build_latency_table(model: nn.Module, input_shape, runtime: str = "torch", threads: int | None = None, *,
                        repeats: int = DEFAULT_REPEATS, min_time_s: float = DEFAULT_MIN_TIME_S,
                        progress: bool = False, precision: str = "fp32", calibration_model: nn.Module | None = None,
                        calibration_fractions: dict | None = None) -> LatencyTable:
    """Measure a fresh table for `model` at `input_shape` on this CPU, in `runtime` with `threads` threads.

    Each grid entry is the fastest of at least `repeats` runs lasting at least `min_time_s` seconds
    (fewer, shorter runs build faster and estimate worse); the dense network is timed by the protocol of
    measure/timing.py for at least NETWORK_TIME_FACTOR times as long, its median recorded. precision
    "int8" (onnxruntime) quantises every layer variant and the network as `export --int8` does. `model`
    is not changed: the timing runs on a float32 copy on the CPU in eval mode. Nothing is cached (see
    `latency_table`).

    calibration_model: `model` with every prunable unit at half its channels (pruning's `half_width_copy`),
    timed like the dense network for the table's second calibration point; calibration_fractions: each
    layer's (in, out) channel fractions in it, as the planner prices them. Both or neither; without them the
    table is calibrated on the dense network alone.
    """
    check_precision(runtime, precision)
    check_timing(threads, repeats, min_time_s)
    input_shape = tuple(int(s) for s in input_shape)
    version = runtime_version(runtime)  # a runtime's package missing: one line, before any work
    threads = threads or torch.get_num_threads()
    net, layers = traced_copy(model, input_shape)
    fractions = check_calibration(calibration_model, calibration_fractions, layers)

    from tqdm import tqdm

    grids, timed = {}, {}
    runner = get_runtime(runtime)
    with torch_threads(threads):
        for name in tqdm(list(layers), desc="timing layers", disable=not progress, file=None):
            layer = layers[name]
            cells, times = list(grid_cells(layer, runtime)), {}  # one timing per distinct layer shape
            for cell in cells:
                if cell.shape not in times:
                    times[cell.shape] = runner.time_module(cell.module, cell.input_shape, threads, 3, repeats,
                                                           min_time_s, precision)
            grids[name] = [[times[cell.shape] for cell in row] for row in grid_rows(cells)]
            timed[name] = layer.description(runtime)
        # fp32: an identity holds nothing to quantise, and the call's cost does not depend on it.
        overhead = runner.time_module(nn.Identity(), input_shape, threads, 3, repeats, min_time_s, "fp32")
        step = runner.module_step(net, input_shape, threads, precision)
        network = time_network(step, repeats, min_time_s)
        point = None
        if calibration_model is not None:
            half = runner.module_step(cpu_copy(calibration_model), input_shape, threads, precision)
            timed_half = time_network(half, repeats, min_time_s)
            point = {"network_ms": timed_half["p50_ms"], "fractions": fractions,
                     "network_timing": network_timing(timed_half)}
    spec = getattr(model, "cdprune_spec", None) or {}
    return LatencyTable(architecture=architecture_id(model), input_shape=input_shape, runtime=runtime,
                        runtime_version=version, threads=threads, cpu_model=cpu_model_name(),
                        machine=platform.machine(), grids=grids, network_ms=network["p50_ms"],
                        layer_sum_ms=sum(g[-1][-1] for g in grids.values()), layers=timed, model=spec.get("name"),
                        repeats=repeats, min_time_s=float(min_time_s), precision=precision, overhead_ms=overhead,
                        network_timing=network_timing(network), calibration_point=point,
                        source="measured on this machine")


def time_network(step, repeats: int, min_time_s: float) -> dict:
    """A whole network timed by measure/timing.py's protocol, NETWORK_TIME_FACTOR times a grid entry's time at least."""
    return time_calls(step, warmup=5, min_repeats=max(5, repeats), min_time_s=NETWORK_TIME_FACTOR * min_time_s,
                      max_time_s=NETWORK_TIME_LIMIT * NETWORK_TIME_FACTOR * min_time_s)


def check_calibration(model: nn.Module | None, fractions: dict | None, layers) -> dict | None:
    """{layer: [in, out]} of a calibration point, refused in one line where it is half given or names a layer
    the table does not time."""
    if (model is None) != (fractions is None):
        raise CdpruneError("a calibration point needs both the half-width model and its layers' fractions",
                           "give calibration_model and calibration_fractions together, or neither")
    if fractions is None:
        return None
    try:
        checked = {}
        for name, pair in fractions.items():
            if name not in layers:
                raise ValueError(f"it names layer {name!r}, which the model does not run")
            checked[str(name)] = check_fractions(pair)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CdpruneError(f"calibration_fractions are not {{layer: (in, out)}} fractions in (0, 1] ({exc})",
                           "build them with cdprune.half_width_copy") from None
    return checked


def network_timing(result: dict) -> dict:
    """What a table records of the dense network's timing (measure/timing.py's result without the raw times)."""
    return {k: result[k] for k in ("p50_ms", "p90_ms", "n", "ci_rel", "converged", "noisy", "noise")}


def traced_copy(model: nn.Module, input_shape):
    """(a float32 CPU copy of `model` in eval mode, its conv and linear layers as `_trace` finds them)."""
    net = cpu_copy(model)
    return net, _trace(net, input_shape)


def cpu_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy of `model` in eval mode: what is timed (eval mode, the move and float32 must not reach
    the caller's model)."""
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()


@dataclass
class _Layer:
    """A conv or linear layer as the network runs it: its input shape, and the BN and activation after it."""

    module: nn.Module
    input_shape: tuple
    bn: nn.Module | None = None
    act: nn.Module | None = None

    def description(self, runtime: str) -> str:
        kind = "linear" if isinstance(self.module, nn.Linear) else "conv"
        if not get_runtime(runtime).layers_as_deployed:
            return kind
        parts = [kind] + (["bn"] if self.bn is not None else []) + \
            ([type(self.act).__name__.lower()] if self.act is not None else [])
        return "+".join(parts)


def _trace(model: nn.Module, input_shape) -> dict[str, _Layer]:
    """Every conv and linear layer that a forward pass calls, with the BatchNorm and activation modules
    that take its output directly (in call order)."""
    leaves = {n: m for n, m in model.named_modules() if not list(m.children())}
    calls: list[tuple[str, nn.Module, object, object]] = []

    def hook(name):
        def record(module, args, output):
            calls.append((name, module, args[0] if args else None, output))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in leaves.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise CdpruneError(f"the model rejects input shape {input_shape} ({str(exc).splitlines()[0][:120]})") from None
    finally:
        for h in handles:
            h.remove()

    def reader(start: int, tensor, kinds):
        """The first call after `start` that takes `tensor` itself as input, if it is one of `kinds`."""
        for j in range(start + 1, len(calls)):
            if calls[j][2] is tensor:
                return j if isinstance(calls[j][1], kinds) else None
        return None

    layers: dict[str, _Layer] = {}
    for i, (name, module, inp, out) in enumerate(calls):
        if not isinstance(module, _LAYERS) or name in layers or not isinstance(inp, torch.Tensor):
            continue
        layer = _Layer(module, tuple(inp.shape[1:]))
        width = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        last, j = i, reader(i, out, _BATCHNORMS)
        if j is not None and calls[j][1].num_features == width:
            layer.bn, last = calls[j][1], j
        k = reader(last, calls[last][3], ACTIVATIONS)
        if k is not None:
            layer.act = calls[k][1]
        layers[name] = layer
    return layers


def _grid_module(layer: _Layer, i: int, o: int, depthwise: bool) -> nn.Module:
    """A fresh layer like `layer.module` with `i` inputs and `o` outputs (with its BN and activation)."""
    base = layer.module
    if isinstance(base, nn.Linear):
        module = nn.Linear(i, o, bias=base.bias is not None)
    else:
        groups = o if depthwise else base.groups
        # Keywords: a transposed conv's positional arguments differ (output_padding comes before groups).
        extra = {"output_padding": base.output_padding} if base.transposed else {}
        module = type(base)(o if depthwise else i, o, base.kernel_size, stride=base.stride, padding=base.padding,
                            dilation=base.dilation, groups=groups, bias=base.bias is not None,
                            padding_mode=base.padding_mode, **extra)
    parts = [module]
    if layer.bn is not None:
        parts.append(type(layer.bn)(o))
    if layer.act is not None:
        parts.append(copy.deepcopy(layer.act))
    return nn.Sequential(*parts).eval()


@dataclass(frozen=True)
class GridCell:
    """One entry of a layer's grid: the fractions' indices, the widths timed and the module that times them."""

    row: int  # index of the input fraction
    column: int  # index of the output fraction
    shape: tuple[int, int]  # (in, out) channels actually timed; cells of one shape share a timing
    module: nn.Module
    input_shape: tuple  # without the batch axis


def grid_cells(layer: "_Layer", runtime: str):
    """Every cell of the grid, row by row: depthwise convs are timed along the diagonal only, grouped convs at
    widths rounded to multiples of their group count, grouped transposed convs at full width. The module is
    the layer as `runtime` times it (with its BN and activation when the runtime deploys them fused)."""
    base, shape = layer.module, layer.input_shape
    conv = not isinstance(base, nn.Linear)
    c_in, c_out = (base.in_channels, base.out_channels) if conv else (base.in_features, base.out_features)
    depthwise = conv and base.groups > 1 and base.groups == c_in == c_out
    built: dict[tuple[int, int], nn.Module] = {}
    for r, fi in enumerate(FRACTIONS):
        for c, fo in enumerate(FRACTIONS):
            if conv and base.groups > 1 and not depthwise and base.transposed:
                fi_, fo_ = 1.0, 1.0  # grouped transposed convs are never pruned
            elif depthwise:
                fi_ = fo_ = fo
            else:
                fi_, fo_ = fi, fo
            i, o = max(1, round(fi_ * c_in)), max(1, round(fo_ * c_out))
            if conv and base.groups > 1 and not depthwise:  # pruned group by group: widths stay multiples
                g = base.groups
                i, o = max(g, round(fi_ * c_in / g) * g), max(g, round(fo_ * c_out / g) * g)
            if depthwise:
                i = o
            if (i, o) not in built:
                if get_runtime(runtime).layers_as_deployed:
                    built[(i, o)] = _grid_module(layer, i, o, depthwise)
                else:
                    # The bare layer: eager PyTorch runs BN and activations as separate calls.
                    built[(i, o)] = _grid_module(_Layer(base, shape), i, o, depthwise)[0]
            x_shape = (i, *shape[1:]) if conv else (*shape[:-1], i)
            yield GridCell(r, c, (i, o), built[(i, o)], tuple(x_shape))


def grid_rows(cells) -> list[list[GridCell]]:
    rows: list[list[GridCell]] = [[] for _ in FRACTIONS]
    for cell in cells:
        rows[cell.row].append(cell)
    return rows
