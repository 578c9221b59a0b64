"""Complexity-driven pruning: where channels are coupled (units), which go (sampler), how they go (apply)."""
from .apply import apply_plan
from .pruning_plan import PruningPlan, UnitPlan
from .sampler import AUTO, MODES, Mode, get_mode, make_plan, parse_budget, register_mode
from ..complexity import architecture_id
from .units import ExcludedUnit, UnitsReport, find_units, prunable_units

__all__ = ["apply_plan", "PruningPlan", "UnitPlan", "AUTO", "MODES", "Mode", "get_mode", "parse_budget", "make_plan", "register_mode",
           "architecture_id", "find_units", "ExcludedUnit", "UnitsReport", "prunable_units"]
