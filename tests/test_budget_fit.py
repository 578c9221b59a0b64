"""A latency budget's margin, and plans timed on this machine before training (`fit_plan`)."""
import dataclasses
import json

import pytest

import cdprune
from cdprune import models
from cdprune.measure.latency import cpu_model_name
from cdprune.pruning.baselines import l1_plan, uniform_plan
from support import TINY_TRAIN, fake_latency_table, run_cli

SHAPE = (3, 32, 32)


def test_a_margin_plans_below_the_limit_and_the_plan_keeps_the_limit_as_given():
    net = models.create("alexnet")
    table = fake_latency_table(net, SHAPE, ms=1.0)  # dense 10 ms per layer in all: 80 ms for AlexNet's 8 layers
    limit = 0.7 * table.network_ms
    exact = cdprune.make_plan(net, SHAPE, "fa", None, budget={"latency": limit}, latency_table=table)
    kept = cdprune.make_plan(net, SHAPE, "fa", None, budget={"latency": limit}, latency_table=table, margin=0.2)
    assert exact.latency["after_ms"] > limit * 0.8  # without a margin the plan stops just under the limit…
    assert kept.latency["after_ms"] <= limit * 0.8  # …with 0.2 of it kept free, under 0.8 of it
    assert kept.budget == exact.budget == {"latency": limit}  # what the shipped model is checked against
    assert kept.latency["margin"] == 0.2 and kept.latency["planned_to_ms"] == round(0.8 * limit, 4)
    assert "margin" not in exact.latency  # a plan without one is written as it always was
    assert kept.after.flops < exact.after.flops
    # The baselines reach the same aim.
    for make in (uniform_plan, l1_plan):
        plan = make(net, SHAPE, None, budget={"latency": limit}, latency=table, margin=0.2)
        assert plan.latency["after_ms"] <= 0.8 * limit < limit == plan.budget["latency"], make.__name__


def test_a_margin_the_floor_cannot_meet_names_the_margin():
    net = models.create("alexnet")
    table = fake_latency_table(net, SHAPE, ms=1.0)
    limit = 0.55 * table.network_ms  # floor 0.5 reaches 0.5 of it (the first layer's input is the image): not 0.8 × 0.55
    plan = cdprune.make_plan(net, SHAPE, "fa", None, budget={"latency": limit}, latency_table=table, floor=0.5)
    assert plan.latency["after_ms"] <= limit
    with pytest.raises(cdprune.UnreachableTarget, match="less its margin 0.2 .*lower --margin"):
        cdprune.make_plan(net, SHAPE, "fa", None, budget={"latency": limit}, latency_table=table, floor=0.5,
                          margin=0.2)


@pytest.mark.parametrize("margin, budget, problem", [
    (0.5, "latency=1ms", "outside [-0.5, 0.5)"), (-0.6, "latency=1ms", "outside [-0.5, 0.5)"),
    (0.1, "flops=10M", "serves latency limits only")])
def test_a_bad_margin_is_refused_by_the_planner(margin, budget, problem):
    table = fake_latency_table(models.create("alexnet"), SHAPE)
    with pytest.raises(cdprune.CdpruneError, match=problem.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        cdprune.make_plan(models.create("alexnet"), SHAPE, "fa", None, budget=budget, margin=margin,
                          latency_table=table if "latency" in budget else None)


def _here(table):
    """The table as if it had been timed on this CPU, so that fit_plan times its plans here."""
    return dataclasses.replace(table, cpu_model=cpu_model_name())


def test_a_plan_whose_file_is_slower_than_its_aim_is_made_again_tighter():
    net = models.create("alexnet")
    # Claims a dense AlexNet at 80 µs: any real file is far slower than any plan of it.
    table = _here(fake_latency_table(net, SHAPE, ms=1e-3))
    budget = cdprune.Budget({"latency": 0.9 * table.network_ms}, table=table, runtime="onnxruntime")
    assert budget.margin == cdprune.DEFAULT_MARGIN

    def plan_with(margin):
        return cdprune.make_plan(net, SHAPE, "fa", None, **budget.plan_options(margin))

    first = plan_with(budget.margin)
    fitted = cdprune.fit_plan(budget, net, SHAPE, plan_with)
    record = fitted.latency["fitted"]
    assert record["plans"] > 1 and record["margin"] > budget.margin  # timed, missed, planned again
    assert record["p50_ms"] > record["aim_ms"] and record["p90_ms"] >= record["p50_ms"]
    assert fitted.after.flops < first.after.flops and fitted.budget == first.budget  # smaller, same limit
    assert cdprune.PruningPlan.from_dict(json.loads(json.dumps(fitted.to_dict()))).latency["fitted"] == record


def test_a_plan_whose_file_is_far_under_its_aim_is_made_again_looser_and_a_table_from_elsewhere_is_not_timed():
    net = models.create("alexnet")
    # Claims a dense AlexNet at 8 s: every plan's file is far under its aim, so the first plan gives capacity away.
    table = _here(fake_latency_table(net, SHAPE, ms=1000.0))
    budget = cdprune.Budget({"latency": 0.5 * table.network_ms}, table=table, runtime="onnxruntime")

    def plan_with(margin):
        return cdprune.make_plan(net, SHAPE, "fa", None, **budget.plan_options(margin))

    first = plan_with(budget.margin)
    fitted = cdprune.fit_plan(budget, net, SHAPE, plan_with)
    record = fitted.latency["fitted"]
    assert record["plans"] >= 2 and record["margin"] < 0 and fitted.latency["margin"] == record["margin"]
    assert record["p50_ms"] <= record["aim_ms"] == round(0.95 * 0.5 * table.network_ms, 4)
    assert fitted.after.flops > first.after.flops and fitted.budget == first.budget  # bigger, same limit
    # A table from another CPU (a board's), or fitting turned off: the plan as made, nothing timed.
    for other in (dataclasses.replace(budget, table=dataclasses.replace(table, cpu_model="a board")),
                  dataclasses.replace(budget, fit=False)):
        plan = cdprune.fit_plan(other, net, SHAPE, lambda margin: cdprune.make_plan(
            net, SHAPE, "fa", None, **other.plan_options(margin)))
        assert "fitted" not in plan.latency and plan.units == first.units


def test_run_plans_with_the_margin_and_records_the_fit(tmp_path, capsys):
    net = models.create("alexnet")
    table = _here(fake_latency_table(net, SHAPE, ms=1e-3))
    table.save(tmp_path / "table.json")
    code, out, err = run_cli(capsys, "run", "--model", "alexnet", "--budget", f"latency={0.9 * table.network_ms}ms",
                             "--latency-table", tmp_path / "table.json", "--margin", "0.1", "--out", tmp_path / "job",
                             *TINY_TRAIN)
    assert code == 0, err
    plan = cdprune.PruningPlan.load(tmp_path / "job" / "fa-budget" / "plan.json")
    assert plan.latency["margin"] >= 0.1 and plan.latency["fitted"]["plans"] > 1
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["budget"]["margin"] == 0.1 and summary["budget"]["fit"] is True


@pytest.mark.parametrize("argv, problem", [
    (["run", "--budget", "latency=1ms", "--margin", "0.7"], "margin (--margin) 0.7 is outside [-0.5, 0.5)"),
    (["run", "--budget", "flops=10M", "--margin", "0.1"], "a margin (--margin) serves latency limits only"),
    (["run", "--margin", "0.1"], "--margin goes with a budget"),
    (["compare", "--methods", "dense,fa", "--no-fit"], "--no-fit goes with a budget"),
    (["prune", "--budget", "params=1M", "--margin", "0.1"], "a margin (--margin) serves latency limits only"),
])
def test_a_bad_margin_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys, argv, problem):
    out = tmp_path / "out"
    model = ["alexnet"] if argv[0] == "prune" else ["--model", "alexnet", *TINY_TRAIN]
    code, text, err = run_cli(capsys, *argv, *model, "--out", out)
    assert code == 2 and problem in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_prune_keeps_the_default_margin_of_a_latency_limit_and_says_so(tmp_path, capsys):
    net = models.create("alexnet")
    table = fake_latency_table(net, SHAPE, ms=1.0)
    table.save(tmp_path / "table.json")
    limit = round(0.7 * table.network_ms, 3)
    common = ["prune", "alexnet", "--budget", f"latency={limit}ms", "--latency-table", tmp_path / "table.json"]
    code, out, err = run_cli(capsys, *common, "--out", tmp_path / "default.json")
    assert code == 0, err
    plan = cdprune.PruningPlan.load(tmp_path / "default.json")
    assert plan.latency["margin"] == cdprune.DEFAULT_MARGIN == 0.05 and plan.budget == {"latency": limit}
    assert plan.latency["after_ms"] <= 0.95 * limit and "fitted" not in plan.latency  # prune times nothing
    assert f"latency planned to {round(0.95 * limit, 4)}ms, margin 5%" in out
    code, out, err = run_cli(capsys, *common, "--margin", "0", "--out", tmp_path / "none.json")
    assert code == 0 and "margin" not in cdprune.PruningPlan.load(tmp_path / "none.json").latency


def test_run_compare_and_sweep_fit_plans_by_the_figure_they_are_checked_by():
    """The timer of run, compare and sweep: the file timed in a fresh process, as bench times the shipped file."""
    net = models.create("alexnet")
    table = _here(fake_latency_table(net, SHAPE, ms=1e-3))
    budget = cdprune.Budget({"latency": 0.9 * table.network_ms}, table=table, runtime="onnxruntime",
                            timer=cdprune.file_latency)
    fitted = cdprune.fit_plan(budget, net, SHAPE, lambda margin: cdprune.make_plan(
        net, SHAPE, "fa", None, **budget.plan_options(margin)))
    record = fitted.latency["fitted"]
    assert record["plans"] > 1 and 0 < record["p50_ms"] <= record["p90_ms"]
    assert budget == dataclasses.replace(budget, timer=None)  # the timer is how, not what: budgets compare without it
