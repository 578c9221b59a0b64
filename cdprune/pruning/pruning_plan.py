"""The pruning plan: a small JSON record of which channels each unit keeps.

A plan plus the base model's constructor arguments rebuilds the pruned
architecture exactly, so a pruned model is saved as plan.json + weights and
never as a pickled module. A digest over the content detects edited or
damaged files.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..complexity import METRICS, Totals
from ..errors import CdpruneError
from ..measure.energy import EnergyModel

FORMAT = "cdprune-plan/1"


def rounded_from(round_to: int) -> int:
    """The narrowest unit that keeps a multiple of `round_to` channels (see unit_rounding)."""
    return 2 * round_to


def unit_rounding(channels: int, round_to: int) -> int:
    """The multiple a unit of `channels` keeps: round_to, or 1 for a unit narrower than 2·round_to.

    Rounded to R, a unit narrower than 2R could only stay whole or drop to R, so it would take no part
    in the search, and a small network of 8- to 15-wide layers could not be pruned at all. Such
    units move one channel at a time instead; their share of a network's time is small.
    """
    return round_to if channels >= rounded_from(round_to) else 1


@dataclass(frozen=True)
class UnitPlan:
    name: str  # the unit's first conv; channels are numbered as in the base model
    convs: tuple[str, ...]
    channels: int  # original channel count
    kept: tuple[int, ...]  # sorted indices of the channels that stay


@dataclass(frozen=True)
class PruningPlan:
    """Which filters go, and what that saves. Reductions are fractions (0.5 = halved)."""

    model: str | None  # registry name, or None for a user module
    model_kwargs: dict
    architecture: str  # fingerprint of the base model's parameter shapes
    input_shape: tuple[int, ...]
    mode: str
    target: float | None
    seed: int
    step: float
    floor: float
    round_to: int
    units: tuple[UnitPlan, ...]
    before: Totals
    after: Totals
    steps: int
    budget: dict = field(default_factory=dict)  # metric -> limit, for budget-driven plans
    latency: dict = field(default_factory=dict)  # estimated before/after ms, for latency-aware plans
    target_metric: str | None = None  # the metric `target` applies to ("flops", …)
    # The energy model ("model", its file format) and the estimated mJ per inference ("before_mj", "after_mj"),
    # for plans that involve energy or were given an energy model; empty otherwise, and then absent from the file.
    energy: dict = field(default_factory=dict)

    @property
    def energy_model(self) -> EnergyModel | None:
        """The energy model the plan was made with, or None for a plan that records none."""
        return EnergyModel.from_dict(self.energy["model"], "the plan's energy model") if self.energy else None

    @property
    def reduction(self) -> dict[str, float]:
        return self.after.reduction_from(self.before)

    @property
    def removed_channels(self) -> int:
        return sum(u.channels - len(u.kept) for u in self.units)

    @property
    def narrow_units(self) -> tuple[str, ...]:
        """Units narrower than `rounded_from(round_to)` (with `round_to` > 1), which are not rounded.

        Every other unit keeps a multiple of `round_to` channels.
        """
        return tuple(u.name for u in self.units if self.round_to > 1 and unit_rounding(u.channels, self.round_to) == 1)

    def to_dict(self) -> dict:
        body = {
            "format": FORMAT,
            "model": self.model, "model_kwargs": self.model_kwargs, "architecture": self.architecture,
            "input_shape": list(self.input_shape), "mode": self.mode, "target": self.target, "target_metric": self.target_metric, "budget": self.budget,
            "seed": self.seed, "step": self.step, "floor": self.floor, "round_to": self.round_to, "steps": self.steps,
            "before": asdict(self.before), "after": asdict(self.after), "latency": self.latency,
            "reduction": {m: round(v, 6) for m, v in self.reduction.items()},
            "units": [{"name": u.name, "convs": list(u.convs), "channels": u.channels, "kept": list(u.kept)} for u in self.units],
        }
        if self.energy:  # absent otherwise, so that plans without energy keep the digest they always had
            body["energy"] = self.energy
        where = _non_finite(body)
        if where:
            raise CdpruneError(f"the plan's {where} is not a finite number and JSON has none", "make the plan again "
                               "with finite settings")
        body["digest"] = _digest(body)
        return body

    def to_json(self) -> str:
        # allow_nan=False: other JSON readers reject NaN/Infinity, so a plan must never hold them.
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> Path:
        from ..storage import atomic_write_text

        atomic_write_text(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "PruningPlan":
        from ..storage import load_json_file

        data = load_json_file(path, "plan file", missing=f"create one with 'cdprune prune MODEL --out {path}'",
                              fix="re-create it with 'cdprune prune'")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "plan") -> "PruningPlan":
        def bad(why: str) -> CdpruneError:
            return CdpruneError(f"{source} is not a valid cdprune plan ({why})", "re-create it with 'cdprune prune'")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"format is not {FORMAT}")
        where = _non_finite(data)
        if where:
            raise bad(f"{where} is not a finite number")
        if data.get("digest") != _digest({k: v for k, v in data.items() if k != "digest"}):
            raise bad("its digest does not match its content, so it was edited or damaged")
        try:
            units = tuple(UnitPlan(u["name"], tuple(u["convs"]), _whole(u["channels"], f"unit {u['name']} channels"),
                                   tuple(_whole(i, f"unit {u['name']} keeps channel") for i in u["kept"]))
                          for u in data["units"])
            plan = cls(model=data["model"], model_kwargs=dict(data["model_kwargs"] or {}),
                       architecture=str(data["architecture"]), input_shape=tuple(_whole(s, "input_shape") for s in data["input_shape"]),
                       mode=str(data["mode"]), target=data["target"], seed=_whole(data["seed"], "seed"), step=float(data["step"]),
                       floor=float(data["floor"]), round_to=_whole(data["round_to"], "round_to"), units=units,
                       before=Totals(**data["before"]), after=Totals(**data["after"]), steps=_whole(data["steps"], "steps"),
                       budget=dict(data.get("budget") or {}), latency=dict(data.get("latency") or {}),
                       target_metric=data.get("target_metric"), energy=dict(data.get("energy") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"missing or malformed field {exc}") from None
        if plan.energy:
            if set(plan.energy) != {"model", "before_mj", "after_mj"} or any(
                    isinstance(plan.energy[k], bool) or not isinstance(plan.energy[k], (int, float))
                    for k in ("before_mj", "after_mj")):
                raise bad("its energy is not a model with before_mj and after_mj")
            try:
                plan.energy_model
            except CdpruneError as exc:  # the model's own one-line reason, without its file-format hint
                raise bad(str(exc).split(":")[0]) from None
        if plan.target is not None and (isinstance(plan.target, bool) or not isinstance(plan.target, (int, float))):
            raise bad("its target is not a number")
        seen = set()
        for u in plan.units:
            if u.name in seen:
                raise bad(f"unit {u.name} is listed twice")
            seen.add(u.name)
            if list(u.kept) != sorted(set(u.kept)) or not u.kept or u.kept[0] < 0 or u.kept[-1] >= u.channels:
                raise bad(f"unit {u.name} keeps channels outside 0..{u.channels - 1} or repeats one")
        return plan


def _whole(value, what: str) -> int:
    """A JSON integer as it is: int() would turn 0.7 into 0, "3" into 3 and true into 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} {value!r} is not an integer")
    return value


def _non_finite(value, where: str = "") -> str | None:
    """The path of the first NaN or infinity in a JSON-like value ("budget.flops"), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _digest(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


__all__ = ["PruningPlan", "UnitPlan", "METRICS"]
