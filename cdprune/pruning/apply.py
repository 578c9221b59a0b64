"""How channels go: physical removal with torch-pruning, driven by a plan."""
from __future__ import annotations

import numpy as np
import torch.nn as nn

from ..errors import CdpruneError
from .pruning_plan import PruningPlan
from ..complexity import architecture_id
from .units import build_graph


def apply_plan(model: nn.Module, plan: PruningPlan) -> nn.Module:
    """Remove the channels `plan` drops from `model`, in place, and return it.

    The result is a genuinely smaller module (fewer channels, not masks). `model`
    must have the architecture the plan was made for; its weights are kept for
    the channels that stay.
    """
    found = architecture_id(model)
    if found != plan.architecture:
        made_for = plan.model or "another model"
        raise CdpruneError(f"this plan was made for a different architecture ({made_for} {plan.model_kwargs or ''}), "
                           f"not this model: apply it to the model it was made for, or make a new plan")
    graph = build_graph(model, plan.input_shape)
    for unit in plan.units:
        if len(unit.kept) == unit.channels:
            continue
        try:
            root = model.get_submodule(unit.name)
        except AttributeError:
            raise CdpruneError(f"the plan names layer {unit.name}, which this model lacks: make a new plan") from None
        removed = np.setdiff1d(np.arange(unit.channels), unit.kept).tolist()
        pruner = graph.get_pruner_of_module(root)
        graph.get_pruning_group(root, pruner.prune_out_channels, removed).prune()
    return model
