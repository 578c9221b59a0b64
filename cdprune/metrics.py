"""The metrics a plan can aim at, one record each: the table that the planner, budgets, baselines, the CLI,
the reports and the charts read (docs/design.md §3.5).

A `Metric` says what a number means (name, title, unit), how a network's or a unit's cost follows from
the size model, how a limit is written with its units and how a value is shown. Adding a metric is one
`register_metric` call.

Two metrics need a model that lives higher in the house: energy an energy model, latency a per-layer
latency table. The table names that model (`priced_by`) and says how to use it; the planner passes the
model in. Nothing here imports it, so this module sits on the lowest floor.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import registry
from .errors import CdpruneError
from .formatting import human_bytes, human_count, human_energy

ENERGY_MODEL = "energy model"  # cdprune.EnergyModel: make_plan's energy_model
LATENCY_TABLE = "latency table"  # cdprune.LatencyTable: make_plan's latency_table (or this machine's, cached)


class Sizes(NamedTuple):
    """What the size model knows of a network or of one unit's convs (numbers, or numpy arrays with one entry per
    unit). A `complexity.Totals` has the first three, so a metric that reads only those reads a Totals too."""

    params: Any
    flops: Any  # multiply-accumulates
    memory_bytes: Any  # output feature maps at float32
    bytes_moved: Any  # weights and inputs read, outputs written (the traffic an energy model prices)


# Text units of a limit -> factor to the metric's unit; matched without regard to case.
COUNT_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9,
               "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
TIME_UNITS = {"ms": 1.0, "s": 1000.0, "us": 1e-3}  # to milliseconds
ENERGY_UNITS = {"mJ": 1.0, "uJ": 1e-3, "J": 1000.0}  # to millijoules; µJ and μJ are read as uJ


@dataclass(frozen=True)
class Metric:
    """One metric: what it is, what prices it, how its limits are written and its values shown.

    cost(sizes, model): the metric of a network or, with arrays, of each unit's convs (the unit's complexity
        c_u of §3.2), from the size model's `Sizes` and the model named by `priced_by` (None for a metric the
        size model alone prices).
    layer_cost(model, layer, in_fraction, out_fraction): instead of `cost`, for a metric priced layer by
        layer at the fractions of its input and output channels that a layer keeps; the network's figure
        is the sum over its conv and linear layers, a unit's the sum over its convs.
    run_field: the attribute of a run's records (RunMetrics, MethodSummary, SweepPoint) that holds its value,
        for the comparison charts; None for a metric that runs do not record.
    """

    name: str  # the key of budgets, target metrics and --metric: lower case
    title: str  # table rows and chart axes: "FLOPs"
    unit: str  # what one of its numbers counts: "MACs", "bytes", "ms"
    cost: Callable[[Sizes, Any], Any] | None = None
    layer_cost: Callable[[Any, str, float, float], float] | None = None
    priced_by: str | None = None  # ENERGY_MODEL, LATENCY_TABLE, or None: the size model alone
    limit_units: Mapping[str, float] = field(default_factory=lambda: COUNT_UNITS)
    show: Callable[[float], str] = human_count  # a value for people
    show_limit: Callable[[float], str] | None = None  # a budget's limit, where it differs from `show`
    example: str = "1M"  # a limit as a budget takes it, for help and error messages
    run_field: str | None = None

    @property
    def sized(self) -> bool:
        """Priced by the size model alone: every planner (the baselines too) can aim at it, on any machine."""
        return self.priced_by is None

    @property
    def measured(self) -> bool:
        """Priced from timings of a device, which differ from machine to machine."""
        return self.priced_by == LATENCY_TABLE

    def of(self, sizes, model=None):
        """The metric of `sizes` (a network's totals, or arrays over units); not for `layer_cost` metrics."""
        return self.cost(sizes, model)

    def limit(self, value: float) -> str:
        return (self.show_limit or self.show)(value)

    def parse(self, text: str) -> float:
        """'100M' -> 1e8, '5ms' -> 5.0, '500uJ' -> 0.5: a limit in the metric's unit; ValueError if it is not one."""
        value = text.strip().lower().replace("µ", "u").replace("μ", "u")
        number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
        scales = {unit.lower(): factor for unit, factor in self.limit_units.items()}
        suffix = value[len(number):]
        if suffix not in scales:
            raise ValueError(suffix)
        return float(number) * scales[suffix]

    def units_text(self) -> str:
        """'ms, s, us': the units a limit may carry, for help."""
        return ", ".join(unit for unit in self.limit_units if unit)


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add `metric` to the table; a second metric of the same name replaces the first, with a warning."""
    if not metric.name or metric.name != metric.name.strip().lower() or any(c in metric.name for c in "=, "):
        raise ValueError(f"metric name {metric.name!r} must be lower case, without spaces, '=' or ','")
    if (metric.cost is None) == (metric.layer_cost is None):
        raise ValueError(f"metric {metric.name!r} needs exactly one of cost and layer_cost")
    if metric.layer_cost is not None and metric.priced_by is None:
        raise ValueError(f"metric {metric.name!r} is priced layer by layer: name the model that prices it (priced_by)")
    return registry.add(METRICS, metric.name, metric, "metric")


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise CdpruneError(f"unknown metric '{name}'", f"choose one of {', '.join(METRICS)}")
    return METRICS[name]


def metric_names(where: Callable[[Metric], bool] = lambda m: True) -> list[str]:
    """Names of the registered metrics that satisfy `where`, in registration order."""
    return [m.name for m in METRICS.values() if where(m)]


def budget_example() -> str:
    """'params=2M,flops=100M,…': one limit per metric, as --budget takes them."""
    return ",".join(f"{m.name}={m.example}" for m in METRICS.values())


def _latency_layer_ms(table, layer: str, in_fraction: float, out_fraction: float) -> float:
    """One layer's estimated ms: the table's time at these fractions, calibrated to the measured network."""
    return table.estimated_layer_ms(layer, in_fraction, out_fraction)


def _energy_mj(sizes: Sizes, energy_model):
    # The energy model's own formula, so that a plan's figure and a profile's agree to the bit.
    return energy_model.mj(sizes.flops, sizes.bytes_moved)


register_metric(Metric("params", "params", "parameters", cost=lambda s, _: s.params, example="2M",
                       run_field="params"))
register_metric(Metric("flops", "FLOPs", "MACs", cost=lambda s, _: s.flops, example="100M", run_field="flops"))
register_metric(Metric("memory", "memory", "bytes", cost=lambda s, _: s.memory_bytes, show=human_bytes,
                       example="512KB", run_field="memory_bytes"))
register_metric(Metric("latency", "latency", "ms", layer_cost=_latency_layer_ms, priced_by=LATENCY_TABLE,
                       limit_units=TIME_UNITS, show=lambda v: f"{v:.2f}ms", show_limit=lambda v: f"{v:g}ms",
                       example="5ms", run_field="latency_ms"))
register_metric(Metric("energy", "energy", "mJ", cost=_energy_mj, priced_by=ENERGY_MODEL, limit_units=ENERGY_UNITS,
                       show=human_energy, example="5mJ", run_field="energy_mj"))
