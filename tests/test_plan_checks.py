"""Plans are made only from sound settings and applied only where they fit the model.

Covers: a target without a mode, non-finite numbers anywhere in planning, edited plans whose
digest was recomputed, round_to on units never drawn, and a latency table that leaves the
caller's model alone.
"""
import copy
import dataclasses
import hashlib
import json
import math
import platform
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import cdprune
from cdprune import models
from cdprune.pruning import PruningPlan, parse_budget

from support import run_cli

SHAPE = (3, 32, 32)


def _one_line_error(call, match):
    with pytest.raises(cdprune.CdpruneError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# ---- a target needs a mode -----------------------------------------------------------------------

def test_target_without_mode_is_a_one_line_error():
    net = models.create("alexnet")
    message = _one_line_error(lambda: cdprune.make_plan(net, SHAPE, None, 0.5, budget={"flops": 100e6}),
                              r"target \(--target\) needs a mode \(--mode\)")
    assert "--budget" in message  # the other way out: prune to the budget alone
    _one_line_error(lambda: cdprune.make_plan(net, SHAPE, None, 0.5), r"needs a mode")


def test_cli_budget_with_target_but_no_mode_exits_2_without_a_plan(capsys, tmp_path):
    out = tmp_path / "plan.json"
    code, stdout, err = run_cli(capsys, "prune", "vgg16", "--budget", "flops=100M", "--target", "0.5", "--out", out)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and "--mode" in err and "Traceback" not in err
    assert not out.exists()


# ---- only finite numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["flops=nan", "flops=inf", "flops=-inf", "flops=1e400", "flops=1e308G",
                                  "latency=1e400ms", "flops=0", "flops=-5M", "flops=1M,flops=2M"])
def test_parse_budget_rejects_non_finite_and_non_positive_limits(text):
    _one_line_error(lambda: parse_budget(text), "budget")


@pytest.mark.parametrize("setting", [{"target": math.nan}, {"target": math.inf}, {"step": math.nan},
                                     {"step": math.inf}, {"floor": math.nan}, {"floor": -math.inf},
                                     {"target": "0.5"}, {"round_to": 8.0}, {"seed": -1}])
def test_make_plan_rejects_unusable_settings_naming_the_parameter(setting):
    (name, value), = setting.items()
    kwargs = {"mode": "fa", "target": 0.5, **setting}
    message = _one_line_error(lambda: cdprune.make_plan(models.create("alexnet"), SHAPE, **kwargs),
                              f"^{name} \\(--{name.replace('_', '-')}\\)")
    assert "e.g." in message  # the fix comes with the problem


@pytest.mark.parametrize("limit", [math.nan, math.inf, 10**400, -1.0, 0, "nan", "1e400", "lots", [60e6], True])
def test_make_plan_rejects_bad_budget_values(limit):
    _one_line_error(lambda: cdprune.make_plan(models.create("alexnet"), SHAPE, None, None, budget={"flops": limit}),
                    r"budget \(--budget\)")


def test_budget_values_given_as_text_are_read_like_the_cli():
    net = models.create("alexnet")
    plan = cdprune.make_plan(net, SHAPE, None, None, budget={"flops": "60M", "memory": "600KB"})
    assert plan.budget == {"flops": 60e6, "memory": 600e3}
    assert plan.after.flops <= 60e6 and plan.after.memory_bytes <= 600e3
    same = cdprune.make_plan(net, SHAPE, None, None, budget={"flops": 60e6, "memory": 600e3})
    assert same == plan


@pytest.mark.parametrize("argv", [["--target", "nan"], ["--target", "inf"], ["--step", "nan"],
                                  ["--budget", "flops=1e400"], ["--budget", "flops=inf"]])
def test_cli_rejects_non_finite_numbers(capsys, tmp_path, argv):
    out = tmp_path / "plan.json"
    code, _, err = run_cli(capsys, "prune", "alexnet", *argv, "--out", out)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def _reject_constant(name):
    raise AssertionError(f"non-standard JSON constant {name}")


def test_plan_json_holds_only_standard_numbers(tmp_path):
    plan = cdprune.make_plan(models.create("alexnet"), SHAPE, "fa", 0.4)
    json.loads(plan.to_json(), parse_constant=_reject_constant)  # standard JSON: no NaN or Infinity
    broken = dataclasses.replace(plan, budget={"flops": math.inf})
    _one_line_error(broken.to_json, r"budget\.flops is not a finite number")

    data = plan.to_dict()
    data["step"] = math.nan
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(_with_digest(data)))  # json.dumps writes NaN unless told not to
    _one_line_error(lambda: PruningPlan.load(path), r"holds NaN, which is not a finite number")


# ---- edited plans with a recomputed digest -----------------------------------------------------------

def _with_digest(data):
    """`data` with the digest a plan file would carry, computed here as the format defines it."""
    body = {k: v for k, v in data.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return {**body, "digest": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()}


@pytest.fixture(scope="module")
def alexnet_plan():
    return cdprune.make_plan(models.create("alexnet"), SHAPE, "fa", 0.5, seed=0)


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _load_edited(tmp_path, plan, edit):
    data = copy.deepcopy(plan.to_dict())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(_with_digest(data)))
    return PruningPlan.load(path)


def test_hand_computed_digest_matches_the_format(tmp_path, alexnet_plan):
    # The control for the edits below: an unedited plan with the digest recomputed loads and applies.
    loaded = _load_edited(tmp_path, alexnet_plan, lambda data: None)
    assert loaded == alexnet_plan
    pruned = cdprune.apply_plan(models.create("alexnet"), loaded)
    assert cdprune.profile(pruned, SHAPE).totals == alexnet_plan.after


def _drop_unit(data):
    del data["units"][1]


def _onto_linear(data):
    data["units"][1]["name"] = "classifier.1"


def _wrong_channels(data):
    data["units"][1]["channels"] += 8


def _other_convs(data):
    data["units"][1]["convs"] = ["features.4", "features.8"]


def _edited_after(data):
    data["after"]["flops"] -= 1


def _edited_before(data):
    data["before"]["params"] += 1


@pytest.mark.parametrize("edit, match", [
    (_drop_unit, r"lacks unit features\.4 of this model"),
    (_onto_linear, r"unit classifier\.1, which is a Linear layer, not a prunable unit"),
    (_wrong_channels, r"unit features\.4 has 200 channels but this model's has 192"),
    (_other_convs, r"unit features\.4 couples convs features\.4, features\.8 but this model's couples features\.4:"),
    (_edited_after, r"states totals after pruning of .* but its units give"),
    (_edited_before, r"dense totals .* are not this model's"),
])
def test_edited_plan_is_refused_before_the_model_changes(tmp_path, alexnet_plan, edit, match):
    plan = _load_edited(tmp_path, alexnet_plan, edit)  # the digest holds: only the unit check can catch it
    model = models.create("alexnet")
    dense = _shapes(model)
    _one_line_error(lambda: cdprune.apply_plan(model, plan), match)
    assert _shapes(model) == dense  # nothing was removed


def test_duplicated_unit_is_refused_on_load_and_on_apply(tmp_path, alexnet_plan):
    _one_line_error(lambda: _load_edited(tmp_path, alexnet_plan, lambda d: d["units"].append(d["units"][2])),
                    r"unit features\.8 is listed twice")
    twice = dataclasses.replace(alexnet_plan, units=alexnet_plan.units + (alexnet_plan.units[2],))
    _one_line_error(lambda: cdprune.apply_plan(models.create("alexnet"), twice), r"lists unit features\.8 twice")


# ---- round_to reaches every unit -----------------------------------------------------------------------

class OddWidths(nn.Module):
    """Widths 37 and 20 are no multiple of 8; width 5 is narrower than 16 (2·8). Input 3x16x16, every conv 3x3 'same'."""

    WIDTHS = (3, 37, 5, 64, 20)

    def __init__(self):
        super().__init__()
        layers = []
        for c_in, c_out in zip(self.WIDTHS, self.WIDTHS[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(self.WIDTHS[-1], 10, bias=False)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def _hand_flops(widths):
    """MACs of OddWidths with these conv output widths: each conv c_out·c_in·9 per each of 16·16 positions."""
    chans = (3, *widths)
    return sum(o * i * 9 * 16 * 16 for i, o in zip(chans, chans[1:])) + widths[-1] * 10


@pytest.mark.parametrize("seed", range(4))
def test_round_to_makes_every_unit_a_multiple_even_when_never_drawn(seed):
    shape = (3, 16, 16)
    plan = cdprune.make_plan(OddWidths(), shape, "fa", 0.05, seed=seed, round_to=8)
    widths = {u.name: len(u.kept) for u in plan.units}
    assert [u.channels for u in plan.units] == [37, 5, 64, 20]
    for u in plan.units:
        assert len(u.kept) % 8 == 0 or u.channels < 16, (u.name, len(u.kept))
    assert plan.narrow_units == ("features.2",)
    assert plan.after.flops == _hand_flops([widths[n] for n in ("features.0", "features.2", "features.4", "features.6")])
    pruned = cdprune.apply_plan(OddWidths(), plan)
    assert cdprune.profile(pruned, shape).totals == plan.after


def test_round_to_one_turns_rounding_off():
    plan = cdprune.make_plan(OddWidths(), (3, 16, 16), "fa", 0.05, seed=0, round_to=1)
    assert plan.narrow_units == () and plan.round_to == 1


def test_the_default_rounds_to_eight():
    # benchmarks/rounding.py chose 8; the 5-channel unit, narrower than 16, is not rounded and is named.
    plan = cdprune.make_plan(OddWidths(), (3, 16, 16), "fa", 0.05, seed=0)
    assert plan.round_to == 8 and plan.narrow_units == ("features.2",)


def test_a_network_of_narrow_units_still_prunes_at_the_default_rounding():
    # Rounded to 8, a 12-wide unit could only drop to 8 and an 8-wide one not at all: units narrower
    # than 16 move one channel at a time, so a small network still reaches its target.
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(12, 10, 1))
    plan = cdprune.make_plan(net, (3, 16, 16), "fa", 0.5, seed=0)
    assert plan.round_to == 8 and plan.narrow_units == ("0", "2")
    assert plan.reduction["flops"] >= 0.5 and any(len(u.kept) % 8 for u in plan.units)


def test_floor_that_forbids_rounding_names_the_unit():
    # 37 channels at floor 0.95 keep at least 36, above 32, the widest multiple of 8 that fits.
    _one_line_error(lambda: cdprune.make_plan(OddWidths(), (3, 16, 16), "fa", 0.01, floor=0.95, round_to=8),
                    r"unit features\.0's 37 channels.*lower the floor")


# ---- the latency table leaves the model alone --------------------------------------------------------------

def _cpu_model_from_proc():
    """What `lscpu`-style tools print as the model name: the value after the first "model name" key."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = re.findall(r"^model name\s*:\s*(.+)$", text, flags=re.M)
    return names[0].strip() if names else platform.processor() or platform.machine()


def test_latency_plan_keeps_the_model_as_given_and_keys_the_cache_by_cpu_model(tmp_path, monkeypatch):
    monkeypatch.setenv("CDPRUNE_CACHE", str(tmp_path))
    model = models.create("alexnet").train()  # dropout: train and eval mode differ
    params = {k: (v.device, v.dtype, v.detach().clone()) for k, v in model.state_dict().items()}
    # A params budget, not a latency target: whether a latency target is reachable depends on timings
    # that a busy machine disturbs, and this test is about the model and the cache key, not the timings.
    dense_params = sum(p.numel() for p in model.parameters())
    plan = cdprune.make_plan(model, SHAPE, "la", None, budget={"params": 0.9 * dense_params}, seed=0)
    assert plan.mode == "la" and plan.latency["before_ms"] > 0 and plan.after.params <= 0.9 * dense_params
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert set(after) == set(params)
    for k, (device, dtype, value) in params.items():
        assert after[k].device == device and after[k].dtype == dtype and torch.equal(after[k], value), k

    (table,) = (tmp_path / "latency").iterdir()
    expected = _cpu_model_from_proc()
    assert json.loads(table.read_text())["cpu_model"] == expected

    from cdprune.deploy.worker import device_name

    assert device_name("cpu") == expected  # bench reports the same name the table is keyed by
