"""Baselines, `cdprune compare` and `cdprune sweep`."""
import csv
import json

import numpy as np
import pytest
import torch

import cdprune
from cdprune import models
from cdprune.cli import main
from support import TINY_TRAIN
from cdprune.pruning.baselines import l1_plan, magnitude_plan, uniform_plan

SHAPE = (3, 32, 32)
TINY = TINY_TRAIN


@pytest.mark.parametrize("name, metric", [("vgg16", "params"), ("resnet50", "flops"), ("mobilenetv2", "flops")])
def test_baselines_hit_the_target_within_one_point(name, metric):
    for make in (uniform_plan, l1_plan, magnitude_plan):
        plan = make(models.create(name), SHAPE, 0.5, metric, round_to=1)  # one-channel granularity
        assert 0.5 <= plan.reduction[metric] <= 0.51, make.__name__
        assert cdprune.profile(cdprune.apply_plan(models.create(name), plan), SHAPE).totals == plan.after


@pytest.mark.parametrize("mode", ["pa", "ma", "layer-random"])
def test_modes_reach_a_common_metric_target(mode):
    plan = cdprune.make_plan(models.create("vgg16"), SHAPE, mode, 0.5, target_metric="flops")
    assert 0.5 <= plan.reduction["flops"] <= 0.51 and plan.target_metric == "flops"


def test_uniform_takes_the_same_fraction_everywhere():
    plan = uniform_plan(models.create("vgg16"), SHAPE, 0.5, "flops", seed=4, round_to=1)
    fractions = [len(u.kept) / u.channels for u in plan.units]
    assert max(fractions) - min(fractions) < 0.02


def test_l1_keeps_the_largest_filters():
    net = models.create("vgg16")
    with torch.no_grad():
        norms = torch.arange(64, dtype=torch.float32) + 1
        net.features[0].weight.mul_(0).add_(norms.view(-1, 1, 1, 1))  # filter i has L1 norm ∝ i + 1
    plan = l1_plan(net, SHAPE, 0.5, "flops")
    kept = plan.units[0].kept
    assert kept == tuple(range(64 - len(kept), 64))


def test_layer_random_ignores_the_complexity_weights():
    by_memory = [cdprune.make_plan(models.create("vgg16"), SHAPE, "ma", 0.5, target_metric="flops", seed=s) for s in range(4)]
    random = [cdprune.make_plan(models.create("vgg16"), SHAPE, "layer-random", 0.5, target_metric="flops", seed=s)
              for s in range(4)]
    first = lambda plans: np.mean([1 - len(p.units[0].kept) / p.units[0].channels for p in plans])
    assert first(by_memory) > first(random)  # the memory-heavy first conv is drawn far more often by ma


def test_compare_table_files_cost_accounting_and_reuse(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "alexnet", "--methods", "dense,fa,uniform,l1", "--seeds", "2", "--out", str(out),
            *TINY]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "train time (all stages)" in text and "uniform" in text and "l1" in text
    data = json.loads((out / "compare.json").read_text())
    by_method = {s["method"]: s for s in data["summaries"]}
    assert set(by_method) == {"dense", "fa", "uniform", "l1"} and by_method["fa"]["seeds"] == 2
    for name in ("fa", "uniform", "l1"):
        assert 0.5 <= by_method[name]["reduction"]["flops"] <= 0.52
    # l1 pays for dense pre-training and fine-tuning: its training compute is the largest.
    assert by_method["l1"]["train_flops"] > by_method["dense"]["train_flops"] > by_method["fa"]["train_flops"]
    l1_runs = data["runs"]["l1"]
    assert l1_runs[0]["epochs"] == 1 and l1_runs[0]["pretrain_flops"] == data["runs"]["dense"][0]["train_flops"]
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["method"] for r in rows] == ["dense", "fa", "uniform", "l1"]
    assert (out / "compare.md").read_text().count("\n|") >= 5

    stamp = (out / "seed-1" / "uniform" / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0  # re-running trains nothing new
    assert (out / "seed-1" / "uniform" / "model.safetensors").stat().st_mtime_ns == stamp


def test_compare_rejects_unknown_methods(tmp_path, capsys):
    code = main(["compare", "--model", "alexnet", "--methods", "dense,magic", "--out", str(tmp_path / "c"), *TINY])
    assert code == 2 and "unknown method 'magic'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_sweep_points_charts_and_unreachable_targets(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", "alexnet", "--modes", "fa,ma", "--targets", "0.4,0.95", "--out", str(out),
                 "--bench-time", "0.2", *TINY]) == 0
    points = {p["method"]: p for p in json.loads((out / "sweep.json").read_text())["points"]}
    assert set(points) == {"dense", "fa-0.4", "fa-0.95", "ma-0.4", "ma-0.95"}
    assert points["ma-0.95"]["status"] == "unreachable"  # alexnet keeps ≥ 10 % of every unit
    assert points["fa-0.4"]["flops"] <= 0.6 * points["dense"]["flops"]
    assert points["ma-0.4"]["memory_bytes"] <= 0.6 * points["dense"]["memory_bytes"]
    assert all(points[m]["latency_ms"] > 0 and points[m]["cpu_percent"] > 0 for m in ("dense", "fa-0.4"))
    for png in ("tradeoff_resources.png", "tradeoff_device.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert len((out / "sweep.csv").read_text().splitlines()) == 6


def test_pareto_front_keeps_only_points_nothing_beats():
    from cdprune.plots import pareto_front

    # (x, y): (1, 50) and (2, 60) and (4, 70) form the front; (3, 55) is beaten by (2, 60), (5, 70) by (4, 70).
    xs, ys = [3, 1, 5, 2, 4], [55, 50, 70, 60, 70]
    assert pareto_front(xs, ys) == [1, 3, 4]


def test_tradeoff_series_puts_every_point_in_its_axis_units():
    from cdprune.experiment import SweepPoint
    from cdprune.plots import tradeoff_series

    # Hand-made points: 80 % accuracy at 2.5M params, 120M MACs, 300,000 bytes, 4 ms, 1.5 mJ and 6 ms of
    # CPU per inference; at 10 inferences/s 6 ms of CPU is 60 ms per second, 6 % of one core.
    common = dict(status="ok", latency_ms=4.0, energy_mj=1.5, energy_kind="estimated")
    dense = SweepPoint("dense", "dense", None, test_acc=0.9, score=0.9, params=5_000_000, flops=240_000_000,
                       memory_bytes=600_000, cpu_ms=12.0, **common)
    fa = SweepPoint("fa-0.5", "fa", 0.5, test_acc=0.8, score=0.8, params=2_500_000, flops=120_000_000,
                    memory_bytes=300_000, cpu_ms=6.0, **common)
    series = tradeoff_series([dense, fa], fps=10)
    (p_label, p), (f_label, f), (m_label, m) = series["tradeoff_resources.png"]
    assert (p_label, f_label, m_label) == ("parameters (M)", "FLOPs (M MACs)", "activation memory (KB)")
    assert p["fa"] == [(2.5, 80.0, 0.5)] and f["fa"] == [(120.0, 80.0, 0.5)] and m["fa"] == [(300.0, 80.0, 0.5)]
    assert p["dense"] == [(5.0, 90.0, None)]
    (l_label, lat), (e_label, en), (c_label, cpu) = series["tradeoff_device.png"]
    assert lat["fa"] == [(4.0, 80.0, 0.5)] and en["fa"] == [(1.5, 80.0, 0.5)] and e_label.endswith("estimated)")
    assert c_label == "CPU share at 10 inferences/s (% of one core)"
    assert cpu["fa"][0][0] == pytest.approx(6.0) and cpu["dense"][0][0] == pytest.approx(12.0)
    assert tradeoff_series([dense, fa], fps=30)["tradeoff_device.png"][2][1]["fa"][0][0] == pytest.approx(18.0)
