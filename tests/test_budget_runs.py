"""Budgets in `run`, `compare` and `sweep`: every method plans to the budget, and what ships is checked against it."""
import csv
import json

import pytest

import cdprune
from cdprune import models
from cdprune.pruning.baselines import magnitude_plan, uniform_plan
from support import TINY_TRAIN, fake_latency_table, run_cli

SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def missed(tmp_path_factory):
    """`cdprune run` to a latency budget planned with a table that underestimates the device a hundredfold."""
    root = tmp_path_factory.mktemp("missed")
    fake_latency_table(models.create("alexnet"), SHAPE).save(root / "table.json")
    argv = ["run", "--model", "alexnet", "--budget", "latency=0.05ms,flops=60M", "--latency-table",
            root / "table.json", "--runtime", "onnxruntime", "--out", root / "job", *TINY_TRAIN]
    return root, argv


def test_a_budget_the_shipped_model_misses_is_reported_failed(missed, capsys):
    root, argv = missed
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    run = root / "job" / "fa-budget"
    check = json.loads((run / "metrics.json").read_text())["budget_check"]
    rows = {row["metric"]: row for row in check["rows"]}
    # The plan believed the table: its estimate is within the limit…
    assert rows["latency"]["planned"] <= 0.05 and rows["flops"]["planned"] <= 60e6
    # …but the shipped ONNX file, timed in the table's runtime at its one thread, is far slower.
    assert rows["latency"]["measured"] > 0.05 and not rows["latency"]["passed"]
    assert rows["latency"]["measured_p90"] >= rows["latency"]["measured"]
    assert rows["flops"]["passed"] and not check["passed"]
    assert check["file"] == str(run / "model.onnx") and check["runtime"] == "onnxruntime" and check["threads"] == 1
    assert check["precision"] == "fp32" and (run / "model.onnx").exists()
    assert "budget: 1 limit(s) FAIL" in out and "FAIL" in (root / "job" / "report.md").read_text()
    summary = json.loads((root / "job" / "summary.json").read_text())
    assert summary["runs"][1]["budget_check"] == check and summary["budget"]["text"] == "latency=0.05ms,flops=60M"

    # bench prints the same table for the run; --strict turns the failed limit into exit 3.
    code, out, err = run_cli(capsys, "bench", run, "--file", run / "model.onnx", "--threads", "1", "--min-time", "0.1",
                             "--min-repeats", "5", "--json")
    data = json.loads(out)
    assert code == 0 and data["runtime"] == "onnxruntime" and data["file"] == str(run / "model.onnx")
    assert data["budget"]["passed"] is False and [r["passed"] for r in data["budget"]["rows"]] == [False, True]
    code, out, err = run_cli(capsys, "bench", run, "--file", run / "model.onnx", "--threads", "1", "--min-time", "0.1",
                             "--min-repeats", "5", "--strict")
    assert code == 3 and "budget fails on latency" in err and "FAIL" in out


def test_a_flops_budget_run_holds_exactly(tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--model", "alexnet", "--budget", "flops=30M", "--out", tmp_path / "job",
                             *TINY_TRAIN)
    assert code == 0, err
    run = tmp_path / "job" / "fa-budget"
    model, metrics = cdprune.load_run(run)
    flops = cdprune.profile(model, SHAPE).totals.flops
    assert flops <= 30e6 and metrics.flops == flops
    (row,) = metrics.budget_check["rows"]
    assert row == {"metric": "flops", "limit": 30e6, "planned": flops, "measured": flops, "measured_p90": None,
                   "passed": True}
    assert metrics.budget_check["runtime"] == "onnxruntime" and "every limit holds" in out
    # A second run reuses the run and its recorded check.
    assert run_cli(capsys, "run", "--model", "alexnet", "--budget", "flops=30M", "--out", tmp_path / "job",
                   *TINY_TRAIN)[0] == 0
    assert cdprune.load_run(run)[1].budget_check == metrics.budget_check


def test_compare_brings_every_method_within_one_budget(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, text, err = run_cli(capsys, "compare", "--model", "alexnet", "--methods", "dense,pa,uniform,l1",
                              "--budget", "flops=40M,params=2M", "--out", out, *TINY_TRAIN)
    assert code == 0, err
    data = json.loads((out / "compare.json").read_text())
    assert data["budget"]["limits"] == {"flops": 40e6, "params": 2e6} and data["target"] is None
    summaries = {s["method"]: s for s in data["summaries"]}
    assert summaries["dense"]["budget_checks"] is None and summaries["dense"]["flops"] > 40e6  # the reference
    for method in ("pa", "uniform", "l1"):
        run = data["runs"][method][0]
        assert run["flops"] <= 40e6 and run["params"] <= 2e6, method
        assert summaries[method]["budget_checks"][0]["passed"], method
        plan = cdprune.PruningPlan.load(out / "seed-0" / method / "plan.json")
        assert plan.budget == {"flops": 40e6, "params": 2e6} and plan.target is None
    assert "every method at the budget flops=40M,params=2M (fp32)" in text
    assert "budget: every limit holds" in (out / "compare.md").read_text()


def test_baselines_take_the_least_pruning_that_meets_the_budget():
    for make in (uniform_plan, magnitude_plan):
        plan = make(models.create("vgg16"), SHAPE, None, budget={"flops": 100e6}, round_to=1)
        assert plan.after.flops <= 100e6 and plan.budget == {"flops": 100e6}, make.__name__
        assert plan.after.flops > 0.97 * 100e6, make.__name__  # one channel per unit less would break it
    # Latency is priced with the table the modes use: a table twice as slow needs more pruning.
    net = models.create("alexnet")
    fast, slow = fake_latency_table(net, SHAPE, ms=1.0), fake_latency_table(net, SHAPE, ms=2.0)
    limit = 0.6 * fast.network_ms
    plans = [uniform_plan(net, SHAPE, None, budget={"latency": limit}, latency=t) for t in (fast, slow)]
    assert all(p.latency["after_ms"] <= limit for p in plans)
    assert plans[1].after.flops < plans[0].after.flops


def test_sweep_over_budgets_writes_the_budget_table_and_chart(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, text, err = run_cli(capsys, "sweep", "--model", "alexnet", "--modes", "fa", "--budgets",
                              "flops=60M;flops=30M", "--bench-time", "0.05", "--out", out, *TINY_TRAIN)
    assert code == 0, err
    with open(out / "budgets.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["budget"], r["metric"], r["passed"]) for r in rows] == [
        ("fa-flops60M", "flops=60M", "flops", "True"), ("fa-flops30M", "flops=30M", "flops", "True")]
    assert all(float(r["measured"]) <= float(r["limit"]) for r in rows)
    assert (out / "tradeoff_budget.png").stat().st_size > 0
    points = json.loads((out / "sweep.json").read_text())["points"]
    assert [p["budget"] for p in points] == [None, "flops=60M", "flops=30M"]
    from cdprune.plots import budget_series
    from cdprune.experiment import SweepPoint

    series = budget_series([SweepPoint(**p) for p in points], "flops")
    assert [(limit, measured) for limit, measured, _, _ in series["fa"]] == [
        (60e6, points[1]["flops"]), (30e6, points[2]["flops"])]
    assert "budgets.csv" in text


def test_bench_checks_a_plans_budget_with_exact_counts_and_the_energy_estimate(tmp_path):
    plan = cdprune.make_plan(models.create("alexnet"), SHAPE, None, None, budget="energy=2mJ,params=2M")
    plan.save(tmp_path / "plan.json")
    result = cdprune.bench("alexnet", plan_path=str(tmp_path / "plan.json"), min_time_s=0.05, min_repeats=5,
                           against_dense=False)
    rows = {row["metric"]: row for row in result.budget["rows"]}
    # The size model and the energy model price the pruned network exactly as the plan did (no static power).
    assert rows["params"]["measured"] == rows["params"]["planned"] == plan.after.params <= 2e6
    assert rows["energy"]["measured"] == pytest.approx(plan.energy["after_mj"], rel=1e-12)
    assert rows["energy"]["measured"] <= 2 and result.budget["passed"] and result.budget["file"] is None
    assert [r["measured_p90"] for r in result.budget["rows"]] == [None, None]
    assert "budget: every limit holds" in cdprune.report.bench_text(result)
