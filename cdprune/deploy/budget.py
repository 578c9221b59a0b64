"""Does the budget hold for what ships? A pruned run's plan limits, beside what its shipped model measures
(docs/design.md, "Budgets in run, compare and sweep").

A row per limit: the plan's estimate, and what the model measures. Latency is the p50 (and p90) of the
shipped file timed by `bench`; params, FLOPs and memory are the exact counts of the pruned model (the
file does not change them); energy is the energy model's estimate of the pruned model at its measured
latency. A limit holds when the measured figure (the p50, for latency) is at most the limit.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..complexity import Totals
from ..metrics import ENERGY_MODEL, LATENCY_TABLE, get_metric
from ..records import Record


@dataclass(frozen=True)
class BudgetRow(Record):
    """One limit of a budget: what the plan estimated and what the shipped model measures, in the metric's unit."""

    metric: str
    limit: float
    planned: float | None  # the plan's estimate (None: the plan did not price it)
    measured: float  # latency: p50 of the shipped file; otherwise the pruned model's exact count or estimate
    measured_p90: float | None  # latency only
    passed: bool  # measured <= limit


@dataclass(frozen=True)
class BudgetCheck(Record):
    """A budget's limits checked on the model that ships: `file` (None: the PyTorch model) at `precision`, timed in
    `runtime` (its version) with `threads` intra-op threads."""

    budget: dict  # metric -> limit
    rows: list[BudgetRow]
    precision: str
    runtime: str
    runtime_version: str
    threads: int
    file: str | None = None

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def failed(self) -> list[BudgetRow]:
        return [row for row in self.rows if not row.passed]

    def to_dict(self) -> dict:
        return {**super().to_dict(), "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict) -> "BudgetCheck":
        fields = {k: v for k, v in data.items() if k != "passed"}
        return cls(**{**fields, "rows": [BudgetRow(**row) for row in data["rows"]]})


def planned_value(plan, metric: str) -> float | None:
    """The plan's own estimate of `metric`: its totals for the size metrics, its latency and energy records."""
    chosen = get_metric(metric)
    if chosen.priced_by == LATENCY_TABLE:
        return (plan.latency or {}).get("after_ms")
    if chosen.priced_by == ENERGY_MODEL:
        return (plan.energy or {}).get("after_mj")
    return float(chosen.of(plan.after))


def measured_value(metric: str, measured) -> tuple[float, float | None]:
    """(figure, p90) of `metric` for a benchmark (`BenchResult`): latency its p50 and p90, energy its estimate,
    the size metrics the exact counts of the benchmarked model."""
    chosen = get_metric(metric)
    if chosen.priced_by == LATENCY_TABLE:
        return measured.p50_ms, measured.p90_ms
    if chosen.priced_by == ENERGY_MODEL:
        return measured.energy.get("estimated_mj", measured.energy_mj), None
    return float(chosen.of(Totals(measured.params, measured.flops, measured.memory_bytes))), None


def budget_check(plan, measured, file: str | None = None) -> BudgetCheck | None:
    """The plan's budget checked on a benchmark of its model (`BenchResult`); None for a plan without a budget."""
    if plan is None or not plan.budget:
        return None
    rows = []
    for metric, limit in plan.budget.items():
        value, p90 = measured_value(metric, measured)
        rows.append(BudgetRow(metric, limit, planned_value(plan, metric), value, p90, bool(value <= limit)))
    return BudgetCheck(dict(plan.budget), rows, measured.precision, measured.runtime, measured.runtime_version,
                       measured.threads, file)
