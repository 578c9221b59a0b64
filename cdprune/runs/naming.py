"""Run names: one function names every run directory that compare, sweep and the main job create."""
from __future__ import annotations

from ..pruning import PruningPlan


def run_name(method: str, target: float | None = None, *, budget: bool = False) -> str:
    """The one naming rule for runs (folders, table columns, `RunMetrics.method`).

    "dense"; "<method>-<target>" where runs of one method differ by target (main job, sweep);
    "<method>-budget" for a budget-driven plan; the bare method where the target is shared
    by the whole folder (compare).
    """
    if method == "dense":
        return "dense"
    if target is not None:
        return f"{method}-{target:g}"
    return f"{method}-budget" if budget else method


def plan_run_name(plan: PruningPlan | None) -> str:
    """The name of a run trained from `plan` alone (no method registry involved: `cdprune train`)."""
    return "dense" if plan is None else run_name(plan.mode, plan.target, budget=plan.target is None)


