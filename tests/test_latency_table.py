"""Latency tables measured on one machine and used to plan on another (cdprune latency-table, --latency-table)."""
import json

import pytest
import torch

import cdprune
from cdprune import models
from cdprune.cli import main
from cdprune.complexity import architecture_id
from cdprune.measure.latency import cpu_model_name
from cdprune.measure.layer_latency import latency_table
from nets import SeparableNet
from support import run_cli as run
from support import tree

SHAPE = (3, 32, 32)
QUICK = ["--repeats", "5", "--min-time", "0", "--no-progress"]  # fast; the fastest of 5 runs is stable enough
ALEXNET_LAYERS = {"features.0", "features.4", "features.8", "features.11", "features.14", "classifier.1",
                  "classifier.4", "classifier.6"}


def assert_one_line_error(code, err, message):
    assert code == 2 and err.startswith("cdprune: error:") and len(err.strip().splitlines()) == 1
    assert message in err and "Traceback" not in err


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """The "device": an alexnet table for torch at 1 thread, written by the command with its own cache."""
    root = tmp_path_factory.mktemp("device")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDPRUNE_CACHE", str(root / "cache"))
        assert main(["latency-table", "alexnet", "--runtime", "torch", "--threads", "1", *QUICK,
                     "--out", str(root / "table.json")]) == 0
    return root


def test_the_table_records_what_it_was_measured_on(device):
    table = json.loads((device / "table.json").read_text())
    assert table["format"] == "cdprune-latency-table/1"
    assert (table["runtime"], table["threads"], table["input_shape"]) == ("torch", 1, list(SHAPE))
    assert table["runtime_version"] == f"torch {torch.__version__}" and table["cpu_model"] == cpu_model_name()
    assert table["architecture"] == architecture_id(models.create("alexnet")) and table["model"] == "alexnet"
    assert set(table["grids"]) == ALEXNET_LAYERS == set(table["layers"])
    assert all(len(grid) == 4 and all(len(row) == 4 and min(row) > 0 for row in grid) for grid in table["grids"].values())
    assert table["layer_sum_ms"] == pytest.approx(sum(g[-1][-1] for g in table["grids"].values()))
    assert table["network_ms"] > 0
    _, half = cdprune.half_width_copy(models.create("alexnet"), SHAPE)  # the second calibration point, timed too
    assert table["calibration_point"]["fractions"] == {k: list(v) for k, v in half.items()}
    assert table["calibration_point"]["network_ms"] == table["calibration_point"]["network_timing"]["p50_ms"] > 0
    assert not (device / "cache").exists()  # measuring a table for a device does not fill this machine's cache


def test_a_table_plans_identically_on_another_machine(device, tmp_path, capsys, monkeypatch):
    plans = []
    for machine in ("a", "b"):
        monkeypatch.setenv("CDPRUNE_CACHE", str(tmp_path / machine))
        code, _, err = run(capsys, "prune", "alexnet", "--mode", "la", "--target", "0.3", "--latency-table",
                           device / "table.json", "--out", tmp_path / f"{machine}.json")
        assert code == 0, err
        plans.append((tmp_path / f"{machine}.json").read_bytes())
        assert not (tmp_path / machine).exists()  # nothing was measured here
    assert plans[0] == plans[1]
    plan = json.loads(plans[0])
    table = cdprune.LatencyTable.load(device / "table.json")
    # Every layer at full width reads the grid's corner, and the calibration scales their sum to the network.
    assert plan["latency"]["before_ms"] == pytest.approx(table.network_ms, abs=1e-4)
    assert plan["latency"]["after_ms"] <= 0.7 * plan["latency"]["before_ms"] + 1e-4
    assert (plan["latency"]["runtime"], plan["latency"]["cpu_model"]) == ("torch", cpu_model_name())
    api = cdprune.make_plan(models.create("alexnet"), SHAPE, "la", 0.3, latency_table=table)
    assert api.to_dict()["digest"] == plan["digest"]


def test_a_latency_budget_plans_with_the_table(device, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CDPRUNE_CACHE", str(tmp_path / "cache"))
    limit = 0.6 * cdprune.LatencyTable.load(device / "table.json").network_ms
    code, out, err = run(capsys, "prune", "alexnet", "--budget", f"latency={limit}ms", "--latency-table",
                         device / "table.json", "--json", "--out", tmp_path / "p.json")
    assert code == 0, err
    assert json.loads(out)["latency"]["after_ms"] <= limit and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("argv, message", [
    (["vgg16", "--mode", "la"], "was measured for another architecture (alexnet) than this vgg16"),
    (["alexnet", "--mode", "la", "--num-classes", "4"], "(--num-classes or --data), channels (--input) or model "
                                                        "arguments (--model-args) differ; measure one on the device "
                                                        "with 'cdprune latency-table alexnet --num-classes 4 --input "
                                                        "3,32,32 --runtime torch"),
    (["alexnet", "--mode", "la", "--input", "3,64,64"], "was measured for input 3,32,32, not 3,64,64: measure one"),
    (["alexnet", "--mode", "la", "--runtime", "onnxruntime"], "was measured in torch, but the plan is for onnxruntime"),
    (["alexnet", "--mode", "fa"], "serves latency planning only"),
])
def test_a_table_for_something_else_is_refused(device, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(capsys, "prune", *argv, "--latency-table", device / "table.json", "--out", out / "p.json")
    assert_one_line_error(code, err, message)
    assert list(out.iterdir()) == []


def test_damaged_or_missing_tables_are_one_line(device, tmp_path, capsys):
    table = json.loads((device / "table.json").read_text())
    table["grids"]["features.4"][1][2] = -1.0
    (tmp_path / "edited.json").write_text(json.dumps(table))
    (tmp_path / "half.json").write_text((device / "table.json").read_text()[:200])
    for name, message in (("edited.json", "is not a valid cdprune latency table"),
                          ("half.json", "is not valid JSON"), ("missing.json", "not found")):
        code, _, err = run(capsys, "prune", "alexnet", "--mode", "la", "--latency-table", tmp_path / name,
                           "--out", tmp_path / "p.json")
        assert_one_line_error(code, err, message)
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--threads", "0", *QUICK], "threads (--threads) must be a whole number of at least 1"),
    (["--threads", "1", "--repeats", "0"], "repeats (--repeats) must be a whole number of at least 1"),
    (["--threads", "1", "--min-time", "-1"], "min_time_s (--min-time) must be a finite number of seconds >= 0"),
    (["--threads", "1", "--input", "3,1", *QUICK], "rejects input shape"),
])
def test_bad_table_arguments_write_nothing(tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "latency-table", "alexnet", "--runtime", "torch", *argv, "--out", tmp_path / "t.json")
    assert_one_line_error(code, err, message)
    assert list(tmp_path.iterdir()) == []


def test_onnxruntime_tables_time_layers_as_deployed():
    net = SeparableNet().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    table = cdprune.build_latency_table(net, (3, 8, 8), "onnxruntime", 1, repeats=2, min_time_s=0)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # left as it was
    assert table.runtime == "onnxruntime" and table.runtime_version.startswith("onnxruntime ")
    # Each conv with the BN it feeds (folded on export) and the ReLU after that (fused by ONNX Runtime).
    assert table.layers == {"features.0": "conv+bn+relu", "features.3": "conv+bn+relu", "features.6": "conv+bn+relu",
                            "features.9": "conv+bn+relu", "head": "linear"}
    depthwise = table.grids["features.6"]
    assert all(row == depthwise[0] for row in depthwise)  # timed along the diagonal: input width = output width
    # Layers this small time as call overhead, so the plan only checks that the table serves onnxruntime plans.
    plan = cdprune.make_plan(SeparableNet(), (3, 8, 8), None, None, budget={"latency": 2 * table.network_ms},
                             latency_table=table, latency_runtime="onnxruntime")
    assert plan.latency["runtime"] == "onnxruntime" and plan.latency["before_ms"] == pytest.approx(table.network_ms,
                                                                                                   abs=1e-4)


def test_the_cache_keeps_one_table_per_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("CDPRUNE_CACHE", str(tmp_path))
    tables = {runtime: latency_table(SeparableNet(), (3, 8, 8), runtime=runtime, threads=1)
              for runtime in ("torch", "onnxruntime")}
    files = sorted((tmp_path / "latency").iterdir())
    assert len(files) == 2
    saved = {json.loads(f.read_text())["runtime"]: json.loads(f.read_text()) for f in files}
    assert {r: t["cpu_model"] for r, t in saved.items()} == {"torch": cpu_model_name(), "onnxruntime": cpu_model_name()}
    assert {r: t["layers"]["features.0"] for r, t in saved.items()} == {"torch": "conv", "onnxruntime": "conv+bn+relu"}
    state = tree(tmp_path)
    assert latency_table(SeparableNet(), (3, 8, 8), runtime="onnxruntime", threads=1) == tables["onnxruntime"]
    assert tree(tmp_path) == state  # read back, not measured again
