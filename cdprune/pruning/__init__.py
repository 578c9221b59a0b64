"""Complexity-driven pruning: where channels are coupled (units), which go (sampler), how they go (apply)."""
from .apply import apply_plan
from .pruning_plan import PruningPlan, UnitPlan
from .sampler import MODES, Mode, get_mode, plan, register_mode
from .units import architecture_id, find_units

__all__ = ["apply_plan", "PruningPlan", "UnitPlan", "MODES", "Mode", "get_mode", "plan", "register_mode",
           "architecture_id", "find_units"]
