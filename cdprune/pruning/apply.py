"""How channels go: physical removal with torch-pruning, driven by a plan."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..complexity import Totals, architecture_id
from ..complexity import profile as profile_model
from ..errors import CdpruneError
from .pruning_plan import PruningPlan
from .units import ChannelModel, build_graph, find_units

_REMAKE = "make a new plan with 'cdprune prune'"
# Which of a unit's filters stay when a trained model is pruned: the plan's own channels (drawn at random with the
# plan's seed, as the paper does), or as many of the largest L1 norm (docs/design.md, "Inheriting weights and
# distillation").
KEEP_RULES = ("l1", "random")


def apply_plan(model: nn.Module, plan: PruningPlan, keep: str | None = None) -> nn.Module:
    """Remove the channels `plan` drops from `model`, in place, and return it.

    The result is a genuinely smaller module (fewer channels, not masks). `model`
    must have the architecture the plan was made for; its weights are kept for
    the channels that stay. The plan's units must be exactly this model's units
    and its totals must be what they give; otherwise nothing is removed and a
    CdpruneError says what does not match.

    keep: None or "random" removes the channels the plan names; "l1" keeps, in each unit, as many channels
        as the plan keeps, those whose filters (summed over the unit's convs) have the largest L1 norm in
        `model` (its trained weights), as the l1 baseline ranks them.
    """
    if keep is not None and keep not in KEEP_RULES:
        raise CdpruneError(f"unknown keep rule {keep!r}", f"choose {' or '.join(KEEP_RULES)} (--keep)")
    check_made_for(model, plan)
    dense = profile_model(model, plan.input_shape)  # first: it turns a shape the model rejects into a CdpruneError
    graph = build_graph(model, plan.input_shape)
    channels = find_units(model, dense, graph)
    # The digest only proves the file is as written; an edited plan with a recomputed digest
    # would otherwise prune other channels than its stated totals promise.
    removed = _removed_per_unit(model, plan, channels)
    if dense.totals != plan.before:
        raise CdpruneError(f"the plan's dense totals ({_show(plan.before)}) are not this model's at input "
                           f"{_shape(plan.input_shape)} ({_show(dense.totals)}): {_REMAKE}")
    expected = channels.totals(removed)
    if expected != plan.after:
        raise CdpruneError(f"the plan states totals after pruning of {_show(plan.after)} but its units give "
                           f"{_show(expected)}: {_REMAKE}")
    energy = plan.energy_model
    if energy is not None:
        # Priced exactly as the planner priced them, so the figures agree to the bit.
        stated = (plan.energy["before_mj"], plan.energy["after_mj"])
        found = (energy.mj(dense.totals.flops, dense.bytes_moved), energy.mj(expected.flops, channels.bytes_moved(removed)))
        if stated != found:
            raise CdpruneError(f"the plan states energy of {stated[0]!r} mJ before and {stated[1]!r} mJ after pruning, "
                               f"but its energy model and units give {found[0]!r} and {found[1]!r} mJ: {_REMAKE}")

    kept = _largest_l1(model, plan, channels) if keep == "l1" else {u.name: list(u.kept) for u in plan.units}
    for unit in plan.units:
        if len(unit.kept) == unit.channels:
            continue
        root = model.get_submodule(unit.name)
        gone = np.setdiff1d(np.arange(unit.channels), kept[unit.name]).tolist()
        pruner = graph.get_pruner_of_module(root)
        graph.get_pruning_group(root, pruner.prune_out_channels, gone).prune()

    pruned = profile_model(model, plan.input_shape, energy)
    after = pruned.totals
    if after != plan.after or (energy is not None and pruned.energy_mj != plan.energy["after_mj"]):
        # a guard: the checks above make this unreachable for the couplings units.py knows
        raise CdpruneError(f"the pruned model has {_show(after)}, not the plan's {_show(plan.after)}, and was changed "
                           "in place", f"rebuild the model and {_REMAKE}")
    return model


def _largest_l1(model: nn.Module, plan: PruningPlan, channels: ChannelModel) -> dict[str, list[int]]:
    """Per unit, the plan's number of channels, chosen by the largest filter L1 norm summed over the unit's
    convs (a position of a unit around a grouped conv: summed over its channels in every block). Ties keep
    the later channel, as `l1_plan`'s stable ascending sort drops the earlier one."""
    units = {u.name: u for u in channels.units}
    kept = {}
    for unit in plan.units:
        mine = units[unit.name]
        norms = sum(filter_l1(model.get_submodule(c)) for c in mine.convs).cpu().numpy()
        order = np.argsort(norms.reshape(mine.groups, mine.positions).sum(0), kind="stable")
        stay = len(unit.kept) // mine.groups
        kept[unit.name] = mine.expand(np.sort(order[mine.positions - stay:])).tolist()
    return kept


def filter_l1(conv: nn.Module) -> torch.Tensor:
    """L1 norm of each output channel's filter; a transposed conv keeps its output channels on weight dim 1."""
    weight = conv.weight.detach()
    if getattr(conv, "transposed", False):
        weight = weight.transpose(0, 1)
    return weight.abs().flatten(1).sum(1)


# The flags that set a constructor argument the data decides; any other argument comes from --model-args.
_FLAGS = {"num_classes": "--num-classes N, or --data DATA", "in_channels": "--input C,H,W, or --data DATA"}


def check_made_for(model: nn.Module, plan: PruningPlan) -> None:
    """Refuse a plan made for another model, naming the field that differs and the flag that fixes it.

    Registered names and the constructor arguments the plan records are compared as well as the
    architecture, so a plan relabelled by hand or whose arguments contradict its model is refused too.
    """
    spec = getattr(model, "cdprune_spec", None) or {}
    name, kwargs = spec.get("name"), spec.get("kwargs") or {}
    registered = lambda ref: ref is not None and ":" not in ref  # a reference always names module:callable
    if registered(name) and registered(plan.model) and name != plan.model:
        raise CdpruneError(f"this plan was made for {plan.model}, not {name}", f"make a plan for {name} "
                           f"with 'cdprune prune {name}'")
    for key in sorted(set(kwargs) & set(plan.model_kwargs)):
        if kwargs[key] != plan.model_kwargs[key]:
            flag = _FLAGS.get(key, f"--model-args with {key}")
            raise CdpruneError(f"this plan was made for {plan.model or 'a model'} with {key}={plan.model_kwargs[key]!r}, "
                               f"this model has {key}={kwargs[key]!r}", "make the plan for it ('cdprune prune' with "
                               f"{flag})")
    if architecture_id(model) != plan.architecture:
        made_for = plan.model or "another model"
        raise CdpruneError(f"this plan was made for another architecture than {name or 'this model'} with "
                           f"{kwargs or 'its arguments'} ({made_for}, {plan.model_kwargs or 'no arguments'})", "make "
                           "the plan with the same model arguments (--model-args), classes (--num-classes or --data) "
                           "and channels (--input)")


def _removed_per_unit(model: nn.Module, plan: PruningPlan, channels: ChannelModel) -> np.ndarray:
    """Channels the plan removes from each of the model's units; refuses unless the units are exactly the model's."""
    index = {u.name: i for i, u in enumerate(channels.units)}
    removed = np.zeros(len(channels.units), dtype=np.int64)
    seen: set[str] = set()
    for unit in plan.units:
        if unit.name in seen:
            raise CdpruneError(f"the plan lists unit {unit.name} twice: {_REMAKE}")
        seen.add(unit.name)
        if unit.name not in index:
            raise CdpruneError(f"the plan names unit {unit.name}, which is {_what(model, unit.name)}, not a prunable unit "
                               f"of this model: {_REMAKE}")
        mine = channels.units[index[unit.name]]
        if tuple(unit.convs) != tuple(mine.convs):
            raise CdpruneError(f"the plan's unit {unit.name} couples convs {', '.join(unit.convs) or 'none'} but this "
                               f"model's couples {', '.join(mine.convs)}: {_REMAKE}")
        if unit.channels != mine.channels:
            raise CdpruneError(f"the plan's unit {unit.name} has {unit.channels} channels but this model's has "
                               f"{mine.channels}: {_REMAKE}")
        kept = list(unit.kept)
        if not kept or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= unit.channels:
            raise CdpruneError(f"the plan's unit {unit.name} keeps no channel, repeats one or keeps one outside "
                               f"0..{unit.channels - 1}: {_REMAKE}")
        if mine.groups > 1 and kept != mine.expand([c for c in kept if c < mine.positions]).tolist():
            raise CdpruneError(f"the plan's unit {unit.name} feeds or leaves a grouped conv but does not keep the same "
                               f"channels in each of its {mine.groups} groups: {_REMAKE}")
        removed[index[unit.name]] = (unit.channels - len(kept)) // mine.groups
    missing = [u.name for u in channels.units if u.name not in seen]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CdpruneError(f"the plan lacks unit {missing[0]}{more} of this model: {_REMAKE}")
    return removed


def _what(model: nn.Module, name: str) -> str:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return "no layer of this model"
    return f"a {type(module).__name__} layer"


def _show(totals: Totals) -> str:
    return f"{totals.params} params, {totals.flops} FLOPs, {totals.memory_bytes} B memory"


def _shape(shape) -> str:
    return ",".join(str(s) for s in shape)
