"""The metric table (one registration adds a metric everywhere) and the planner settings every method shares."""
import json
import warnings

import pytest
import torch.nn as nn

import cdprune
from cdprune import Metric, PlannerConfig, models, register_metric
from cdprune.formatting import human_bytes
from cdprune.metrics import METRICS, get_metric
from cdprune.pruning import parse_budget
from cdprune.pruning.baselines import l1_plan, magnitude_plan, uniform_plan
from support import TINY_TRAIN, run_cli

SHAPE = (3, 16, 16)


def tiny_net():
    """params by hand: conv 3·16·9 + 16 = 448, BN 2·16 = 32, conv 16·32·9 + 32 = 4640, linear 32·10 + 10 = 330."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


TINY_PARAMS = 448 + 32 + 4640 + 330


@pytest.fixture
def fp16_weights():
    """A toy metric, the weights' bytes at float16, added by one registration (and taken out again)."""
    metric = register_metric(Metric("weights16", "fp16 weights", "bytes", cost=lambda sizes, _: 2 * sizes.params,
                                    show=human_bytes, example="1MB"))
    yield metric
    del METRICS[metric.name]


def test_a_toy_metric_reads_totals_and_parses_limits(fp16_weights):
    assert cdprune.profile(tiny_net(), SHAPE).totals.metric("weights16") == 2 * TINY_PARAMS == 10900
    assert parse_budget("weights16=8KB, flops=1M") == {"weights16": 8000.0, "flops": 1e6}
    with pytest.raises(cdprune.CdpruneError, match="bad budget"):
        parse_budget("weights16=8ms")


def test_a_toy_metric_is_a_budget_and_a_target(fp16_weights):
    plan = cdprune.make_plan(tiny_net(), SHAPE, None, None, budget={"weights16": "8KB"}, round_to=1)
    assert plan.mode == "auto" and plan.budget == {"weights16": 8000.0}
    assert 2 * plan.after.params <= 8000 < 2 * plan.before.params
    assert cdprune.profile(cdprune.apply_plan(tiny_net(), plan), SHAPE).totals == plan.after

    plan = cdprune.make_plan(models.create("vgg16"), (3, 32, 32), "fa", 0.5, target_metric="weights16")
    assert plan.target_metric == "weights16" and plan.reduction["params"] >= 0.5  # 2p halves when p does

    # At floor 0.1 the convs keep 2 and 4 channels: 3·2·9 + 2 + 2·2 + 2·4·9 + 4 + 4·10 + 10 = 186 params, 372 bytes.
    with pytest.raises(cdprune.UnreachableTarget, match=r"weights16=300B cannot be met: .* is 372B"):
        cdprune.make_plan(tiny_net(), SHAPE, None, None, budget="weights16=300B", round_to=1)


def test_a_toy_metric_serves_the_baselines(fp16_weights):
    plan = uniform_plan(models.create("vgg16"), (3, 32, 32), 0.5, "weights16", round_to=1)
    assert 0.5 <= plan.reduction["params"] <= 0.51 and plan.target_metric == "weights16"


def test_a_toy_metric_is_a_choice_of_the_cli(fp16_weights, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "compare", "--help")
    assert code == 0 and "weights16" in out
    code, out, err = run_cli(capsys, "prune", "vgg16", "--budget", "weights16=20MB", "--out", tmp_path / "p.json")
    assert code == 0, err
    assert "budget weights16≤20.00MB" in out
    assert 2 * json.loads((tmp_path / "p.json").read_text())["after"]["params"] <= 20e6


def test_unknown_metrics_name_the_table():
    with pytest.raises(cdprune.CdpruneError, match="use e.g. params=2M,flops=100M,memory=512KB,latency=5ms,energy=5mJ"):
        parse_budget("weights16=1MB")
    with pytest.raises(cdprune.CdpruneError, match="choose one of params, flops, memory, latency, energy$"):
        cdprune.make_plan(tiny_net(), SHAPE, "fa", 0.5, target_metric="weights16")


def test_a_second_registration_warns_and_replaces():
    original = get_metric("flops")
    names = list(METRICS)
    try:
        with pytest.warns(UserWarning, match="'flops' is registered twice"):
            register_metric(Metric("flops", "FLOPs (fp16)", "MACs", cost=lambda sizes, _: sizes.flops))
        assert get_metric("flops").title == "FLOPs (fp16)" and list(METRICS) == names
    finally:
        METRICS["flops"] = original
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_metric(Metric("weights16", "fp16 weights", "bytes", cost=lambda sizes, _: 2 * sizes.params))
        del METRICS["weights16"]


def test_a_metric_needs_one_way_to_be_priced():
    with pytest.raises(ValueError, match="exactly one of cost and layer_cost"):
        register_metric(Metric("nothing", "nothing", "units"))
    with pytest.raises(ValueError, match="lower case"):
        register_metric(Metric("Big Name", "x", "units", cost=lambda sizes, _: sizes.params))
    assert "nothing" not in METRICS


# ---- the planner settings ---------------------------------------------------------------------------------

class Widths(nn.Module):
    """Conv widths 20 and 36 (no multiple of 8, wider than 16) and 12 (narrower than 16)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 20, 3, padding=1), nn.ReLU(), nn.Conv2d(20, 36, 3, padding=1),
                                      nn.ReLU(), nn.Conv2d(36, 12, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(12, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.mark.parametrize("make", [uniform_plan, l1_plan, magnitude_plan])
def test_baselines_round_kept_widths_as_the_modes_do(make):
    plan = make(models.create("vgg16"), (3, 32, 32), 0.5, "flops", round_to=8)
    assert plan.round_to == 8 and plan.reduction["flops"] >= 0.5
    assert all(len(u.kept) % 8 == 0 for u in plan.units if u.channels >= 16)
    assert cdprune.profile(cdprune.apply_plan(models.create("vgg16"), plan), (3, 32, 32)).totals == plan.after

    plan = make(Widths(), SHAPE, 0.3, "flops", round_to=8, floor=0.2)
    kept = {u.name: len(u.kept) for u in plan.units}
    assert kept["features.0"] in (8, 16) and kept["features.2"] in (8, 16, 24, 32)
    assert plan.narrow_units == ("features.4",) and plan.floor == 0.2
    assert cdprune.profile(cdprune.apply_plan(Widths(), plan), SHAPE).totals == plan.after


def test_baselines_at_round_to_one_do_not_round():
    # Without rounding every unit of VGG-16 keeps the same share within a channel, and some share is no multiple of 8.
    plan = uniform_plan(models.create("vgg16"), (3, 32, 32), 0.5, "flops", seed=4, round_to=1)
    fractions = [len(u.kept) / u.channels for u in plan.units]
    assert plan.round_to == 1 and max(fractions) - min(fractions) < 0.02 and any(len(u.kept) % 8 for u in plan.units)


def test_planner_settings_are_checked_when_made():
    with pytest.raises(cdprune.CdpruneError, match=r"round_to \(--round-to\) 0 is not positive"):
        PlannerConfig(round_to=0)
    with pytest.raises(cdprune.CdpruneError, match=r"floor \(--floor\) 1 is outside"):
        PlannerConfig(floor=1.0)
    assert PlannerConfig().to_dict() == {"step": 0.1, "floor": 0.1, "round_to": cdprune.DEFAULT_ROUND_TO}


def test_compare_records_the_same_planner_settings_for_every_method(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, _, err = run_cli(capsys, "compare", "--model", "alexnet", "--methods", "dense,fa,layer-random,uniform,tp-magnitude",
                           "--round-to", "4", "--floor", "0.2", "--step", "0.2", "--out", out, *TINY_TRAIN)
    assert code == 0, err
    data = json.loads((out / "compare.json").read_text())
    planner = {"step": 0.2, "floor": 0.2, "round_to": 4}
    assert data["planner"] == planner
    by_method = {s["method"]: s["planner"] for s in data["summaries"]}
    assert by_method == {"dense": None, "fa": planner, "layer-random": planner, "uniform": planner,
                         "tp-magnitude": planner}
    for method in ("fa", "layer-random", "uniform", "tp-magnitude"):
        plan = cdprune.PruningPlan.load(out / "seed-0" / method / "plan.json")
        assert (plan.step, plan.floor, plan.round_to) == (0.2, 0.2, 4), method
        assert all(len(u.kept) % 4 == 0 for u in plan.units if u.channels >= 8), method
        run = json.loads((out / "seed-0" / method / "metrics.json").read_text())
        assert {k: run["plan"][k] for k in planner} == planner


@pytest.mark.parametrize("command", ["run", "compare", "sweep"])
def test_run_compare_and_sweep_refuse_a_bad_round_to_before_writing(command, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [command, "--model", "alexnet", "--round-to", "0", "--out", out, *TINY_TRAIN]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "round_to (--round-to) 0 is not positive" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
