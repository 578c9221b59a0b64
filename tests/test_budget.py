"""Budget targets and the latency-aware mode `la` (beyond the paper)."""
import json

import pytest

import cdprune
from cdprune import models
from cdprune.cli import main
from cdprune.pruning import parse_budget

from nets import SeparableNet

SHAPE = (3, 32, 32)


def test_parse_budget_units():
    assert parse_budget("flops=100M, params=2m,memory=512KB,latency=5ms") == {
        "flops": 100e6, "params": 2e6, "memory": 512e3, "latency": 5.0}
    assert parse_budget("memory=1MiB,latency=0.5s") == {"memory": 2**20, "latency": 500.0}
    for bad in ("flops", "speed=3", "flops=lots", "latency=5parsecs", ""):
        with pytest.raises(cdprune.CdpruneError, match="budget"):
            parse_budget(bad)


def test_every_budget_holds_and_the_furthest_over_leads():
    plan = cdprune.make_plan(models.create("vgg16"), SHAPE, None, None, budget={"flops": 100e6, "params": 2e6})
    assert plan.after.flops <= 100e6 and plan.after.params <= 2e6
    assert plan.mode == "auto" and plan.target is None and plan.budget == {"flops": 100e6, "params": 2e6}
    pruned = cdprune.apply_plan(models.create("vgg16"), plan)
    assert cdprune.profile(pruned, SHAPE).totals == plan.after


def test_budget_with_a_fixed_mode_samples_by_that_mode():
    by_memory = cdprune.make_plan(models.create("vgg16"), SHAPE, "ma", None, budget={"params": 8e6}, seed=1)
    auto = cdprune.make_plan(models.create("vgg16"), SHAPE, None, None, budget={"params": 8e6}, seed=1)
    assert by_memory.after.params <= 8e6 and auto.after.params <= 8e6
    # Memory-weighted draws hit the early, memory-heavy layers that a params budget alone leaves alone.
    assert by_memory.reduction["memory"] > auto.reduction["memory"]


def test_unreachable_budget_names_the_budget():
    with pytest.raises(cdprune.CdpruneError, match=r"budget flops=1.00M cannot be met: the least .* is \d"):
        cdprune.make_plan(models.create("vgg16"), SHAPE, None, None, budget={"flops": 1e6})


def test_cli_budget(capsys, tmp_path):
    code = main(["prune", "alexnet", "--budget", "flops=60M,memory=600KB", "--out", str(tmp_path / "p.json"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["after"]["flops"] <= 60e6 and data["after"]["memory_bytes"] <= 600e3
    code = main(["prune", "alexnet", "--budget", "flops=1K", "--out", str(tmp_path / "q.json")])
    err = capsys.readouterr().err
    assert code == 2 and "budget flops=1.00K cannot be met" in err and not (tmp_path / "q.json").exists()


@pytest.fixture(scope="module")
def latency_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDPRUNE_CACHE", str(cache))
        yield cache / "latency"


def test_latency_aware_plan_uses_a_cached_table(latency_cache):
    # A small target: a layer grid timed while other processes load the machine can make large cuts
    # look out of reach, and this test is about the cache, not about how far latency can fall.
    plan = cdprune.make_plan(models.create("alexnet"), SHAPE, "la", 0.1, seed=0)
    assert plan.latency["after_ms"] <= 0.9 * plan.latency["before_ms"]
    tables = list(latency_cache.iterdir())
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert set(table["grids"]) == {"features.0", "features.4", "features.8", "features.11", "features.14",
                                   "classifier.1", "classifier.4", "classifier.6"}
    stamp = tables[0].stat().st_mtime_ns

    again = cdprune.make_plan(models.create("alexnet"), SHAPE, "la", 0.1, seed=0)  # same architecture: reused
    assert tables[0].stat().st_mtime_ns == stamp and again.latency == plan.latency
    pruned = cdprune.apply_plan(models.create("alexnet"), plan)
    assert cdprune.profile(pruned, SHAPE).totals == plan.after


def test_latency_budget(latency_cache):
    dense_ms = cdprune.make_plan(models.create("alexnet"), SHAPE, "la", 0.05).latency["before_ms"]
    plan = cdprune.make_plan(models.create("alexnet"), SHAPE, None, None, budget={"latency": 0.75 * dense_ms})
    assert plan.latency["after_ms"] <= 0.75 * dense_ms
    with pytest.raises(cdprune.CdpruneError, match="budget latency=.* cannot be met"):
        cdprune.make_plan(models.create("alexnet"), SHAPE, None, None, budget={"latency": 1e-6})


def test_refresh_rebuilds_the_table(tmp_path, monkeypatch):
    from cdprune.measure.layer_latency import latency_table

    monkeypatch.setenv("CDPRUNE_CACHE", str(tmp_path))
    first = latency_table(SeparableNet(), (3, 16, 16))
    (path,) = (tmp_path / "latency").iterdir()
    stamp = path.stat().st_mtime_ns
    assert latency_table(SeparableNet(), (3, 16, 16)).grids == first.grids
    assert path.stat().st_mtime_ns == stamp
    latency_table(SeparableNet(), (3, 16, 16), refresh=True)
    assert path.stat().st_mtime_ns != stamp
    # A pruned layer is read off the grid: fewer channels never cost more than the full layer, by much.
    assert first.layer_ms("features.3", 0.5, 0.5) <= first.layer_ms("features.3", 1.0, 1.0) * 1.5
