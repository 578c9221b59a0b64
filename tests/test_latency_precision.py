"""Latency tables in the precision the model ships in (int8 for ONNX Runtime), and the torch-free pack that
times one on a board (cdprune latency-table --precision / --pack)."""
import json
import subprocess
import sys

import pytest

import cdprune
from cdprune import LatencyTable, half_width_copy, make_plan
from cdprune.complexity import architecture_id
from cdprune.measure.latency import cpu_model_name
from nets import ResidualNet
from support import run_cli as run

SHAPE = (3, 8, 8)
QUICK = ["--repeats", "2", "--min-time", "0", "--no-progress"]


def grid(scale: float) -> list[list[float]]:
    """A layer whose time grows with its input and output fractions: scale × fi × fo ms."""
    fractions = (0.25, 0.5, 0.75, 1.0)
    return [[scale * fi * fo for fo in fractions] for fi in fractions]


def table(precision: str, costs: dict) -> LatencyTable:
    grids = {name: grid(scale) for name, scale in costs.items()}
    total = sum(g[-1][-1] for g in grids.values())
    return LatencyTable(architecture=architecture_id(ResidualNet()), input_shape=SHAPE, runtime="onnxruntime",
                        runtime_version="onnxruntime 1.0", threads=1, cpu_model="board", machine="aarch64",
                        grids=grids, network_ms=total, layer_sum_ms=total, precision=precision)


def test_an_int8_table_plans_differently_where_int8_times_differ():
    # fp32: the 24-channel body conv dominates; int8 (its kernels quantised): the stem and the head do.
    fp32 = table("fp32", {"stem.0": 0.1, "body.0": 5.0, "body.3": 0.5, "head": 0.01})
    int8 = table("int8", {"stem.0": 3.0, "body.0": 0.2, "body.3": 0.2, "head": 2.0})
    plans = {t.precision: make_plan(ResidualNet(), SHAPE, "la", 0.3, latency_table=t, latency_runtime="onnxruntime",
                                    latency_precision=t.precision) for t in (fp32, int8)}
    assert plans["fp32"].latency["precision"] == "fp32" and plans["int8"].latency["precision"] == "int8"
    assert "onnxruntime 1.0, int8, 1 thread, board" in plans["int8"].latency["source"]
    assert plans["fp32"].latency["before_ms"] == pytest.approx(5.61)
    assert plans["int8"].latency["before_ms"] == pytest.approx(5.4)
    assert plans["fp32"].to_dict()["units"] != plans["int8"].to_dict()["units"]


def test_a_table_of_another_precision_is_refused_in_one_line(tmp_path, capsys):
    fp32 = table("fp32", {"stem.0": 1.0, "body.0": 1.0, "body.3": 1.0, "head": 1.0})
    with pytest.raises(cdprune.CdpruneError, match="times fp32 layers, but the plan is for int8.*--precision int8"):
        make_plan(ResidualNet(), SHAPE, "la", 0.3, latency_table=fp32, latency_precision="int8")
    with pytest.raises(cdprune.CdpruneError, match="torch latency tables time fp32 layers, not 'int8'.*onnxruntime"):
        make_plan(ResidualNet(), SHAPE, "la", 0.3, latency_runtime="torch", latency_precision="int8")
    code, _, err = run(capsys, "latency-table", "tests/nets.py:ResidualNet", "--input", "3,8,8", "--runtime", "torch",
                       "--precision", "int8", "--threads", "1", *QUICK, "--out", tmp_path / "t.json")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not 'int8'" in err
    assert list(tmp_path.iterdir()) == []


def test_tables_without_a_precision_are_fp32(tmp_path):
    data = table("fp32", {"stem.0": 1.0, "body.0": 1.0, "body.3": 1.0, "head": 1.0}).to_dict()
    del data["precision"], data["network_timing"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = LatencyTable.load(tmp_path / "old.json")
    assert old.precision == "fp32" and old.key["precision"] == "fp32"
    assert table("int8", {"head": 1.0}).key != table("fp32", {"head": 1.0}).key


@pytest.fixture(scope="module")
def int8_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "table.json"
    assert cdprune.cli.main(["latency-table", "tests/nets.py:ResidualNet", "--input", "3,8,8", "--runtime",
                             "onnxruntime", "--precision", "int8", "--threads", "1", *QUICK, "--out", str(out)]) == 0
    return out


def test_a_real_int8_table_records_its_precision_and_round_trips(int8_table, tmp_path):
    data = json.loads(int8_table.read_text())
    assert data["precision"] == "int8" and data["runtime"] == "onnxruntime"
    assert set(data["grids"]) == {"stem.0", "body.0", "body.3", "head"}
    assert data["network_ms"] == data["network_timing"]["p50_ms"] > 0
    loaded = LatencyTable.load(int8_table)
    assert loaded.precision == "int8" and ", int8, 1 thread, " in loaded.describe()
    loaded.save(tmp_path / "again.json")
    assert LatencyTable.load(tmp_path / "again.json") == loaded
    # A budget that holds at once: the table is accepted whatever the noise of microsecond layers did to its grid.
    plan = make_plan(ResidualNet(), SHAPE, None, None, budget={"latency": 1000.0}, latency_table=int8_table)
    assert plan.latency["precision"] == "int8"  # the table's precision by default


def test_the_int8_variants_are_quantised():
    from cdprune.measure.runtimes import deployed_onnx
    import onnx
    import torch.nn as nn

    layer = nn.Sequential(nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    ops = {n.op_type for n in onnx.load_from_string(deployed_onnx(layer, (4, 8, 8), "int8")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ, as export --int8 writes
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load_from_string(deployed_onnx(layer, (4, 8, 8))).graph.node}


# ---- the pack: timed on a board that has no torch -----------------------------------------------------

@pytest.fixture(scope="session")
def notorch(tmp_path_factory):
    """A clean virtual environment with only onnxruntime and numpy (a few seconds from the package index)."""
    venv = tmp_path_factory.mktemp("notorch") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "onnxruntime", "numpy"], check=True,
                   capture_output=True, timeout=300)
    return venv / "bin" / "python"


def test_a_pack_is_timed_without_torch_and_plans(notorch, tmp_path, capsys):
    board = subprocess.run([str(notorch), "-c", "import torch"], capture_output=True, text=True)
    assert board.returncode != 0 and "No module named 'torch'" in board.stderr
    code, out, err = run(capsys, "latency-table", "tests/nets.py:ResidualNet", "--input", "3,8,8", "--runtime",
                         "onnxruntime", "--precision", "int8", "--threads", "1", *QUICK, "--pack", tmp_path / "pack")
    assert code == 0, err
    assert "measure_table.py --out table.json" in out and "the dense network and its half-width copy" in out
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["table"]["precision"] == "int8" and set(manifest["grids"]) == {"stem.0", "body.0", "body.3", "head"}
    assert all((tmp_path / "pack" / f).is_file() for f in [*manifest["files"], manifest["network"]])
    # The half-width network of the calibration point ships quantised exactly as the dense one.
    import onnx

    _, fractions = half_width_copy(ResidualNet(), SHAPE)
    half = manifest["calibration"]
    assert half["fractions"] == {k: list(v) for k, v in fractions.items()}
    ops = {n.op_type for n in onnx.load(tmp_path / "pack" / half["network"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert ops == {n.op_type for n in onnx.load(tmp_path / "pack" / manifest["network"]).graph.node}
    done = subprocess.run([str(notorch), str(tmp_path / "pack" / "measure_table.py"), "--repeats", "2",
                           "--min-time", "0", "--out", str(tmp_path / "table.json")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    measured = LatencyTable.load(tmp_path / "table.json")
    assert (measured.precision, measured.runtime, measured.threads) == ("int8", "onnxruntime", 1)
    assert measured.cpu_model == cpu_model_name() and measured.runtime_version.startswith("onnxruntime ")
    assert measured.network_ms > 0 and set(measured.layers) == set(manifest["grids"])
    point = measured.calibration_point  # timed on the board like the dense network
    assert point["fractions"] == half["fractions"] and point["network_ms"] == point["network_timing"]["p50_ms"] > 0
    estimate = sum(measured.estimated_layer_ms(name, *point["fractions"][name]) for name in measured.grids)
    if measured.fit.points == 2:  # microsecond layers: noise can make the fit degenerate, and then the table says so
        assert estimate == pytest.approx(point["network_ms"])
    else:
        assert f"one-point calibration ({measured.fit.fallback})" in measured.describe() and measured.fit.fallback
    plan = make_plan(ResidualNet(), SHAPE, None, None, budget={"latency": 1000.0}, latency_table=tmp_path / "table.json")
    assert plan.latency["precision"] == "int8" and plan.latency["before_ms"] > 0
    code, _, err = run(capsys, "prune", "tests/nets.py:ResidualNet", "--input", "3,8,8", "--budget",
                       "latency=1000ms", "--latency-table", tmp_path / "table.json", "--precision", "int8", "--out",
                       tmp_path / "plan.json")
    assert code == 0, err
    code, _, err = run(capsys, "prune", "tests/nets.py:ResidualNet", "--input", "3,8,8", "--budget",
                       "latency=1000ms", "--latency-table", tmp_path / "table.json", "--precision", "fp32", "--out",
                       tmp_path / "fp32.json")
    assert code == 2 and "--precision" in err and not (tmp_path / "fp32.json").exists()


def test_bad_pack_arguments_write_nothing(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    for argv, message in ((["--runtime", "torch", "--pack", tmp_path / "p"], "ONNX Runtime on the board"),
                          (["--runtime", "onnxruntime", "--pack", tmp_path / "taken"], "already exists"),
                          (["--runtime", "onnxruntime", "--pack", tmp_path / "p", "--out", tmp_path / "t.json"],
                           "either --out")):
        code, _, err = run(capsys, "latency-table", "tests/nets.py:ResidualNet", "--input", "3,8,8", "--threads", "1",
                           *QUICK, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["taken"] and not any((tmp_path / "taken").iterdir())
