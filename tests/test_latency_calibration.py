"""A latency table's two-point calibration: the network's time as a + b·Σ(layers' own times), fitted through the
dense network and a copy with every prunable unit at half its channels (the table's calibration point)."""
import json

import pytest
import torch

import cdprune
from cdprune import LatencyTable, half_width_copy, make_plan, report
from cdprune.complexity import architecture_id
from cdprune.measure.layer_latency import FRACTIONS
from nets import ResidualNet, SeparableNet

SHAPE = (3, 8, 8)
SCALES = {"stem.0": 1.0, "body.0": 2.0, "body.3": 2.0, "head": 1.0}  # each layer takes scale × fi × fo ms
HALF = {name: [0.5, 0.5] for name in SCALES}
OVERHEAD = 0.1  # one call's cost: each layer's own time is its grid entry less this


def table(point_ms: float | None = 4.0, fractions=None, network_ms: float = 10.0) -> LatencyTable:
    """Hand-made: dense own times 0.9 + 1.9 + 1.9 + 0.9 = 5.6 ms; at HALF, 0.15 + 0.4 + 0.4 + 0.15 = 1.1 ms."""
    grids = {name: [[scale * fi * fo for fo in FRACTIONS] for fi in FRACTIONS] for name, scale in SCALES.items()}
    point = None if point_ms is None else {"network_ms": point_ms, "fractions": fractions or HALF}
    return LatencyTable(architecture=architecture_id(ResidualNet()), input_shape=SHAPE, runtime="onnxruntime",
                        runtime_version="onnxruntime 1.0", threads=1, cpu_model="board", machine="aarch64",
                        grids=grids, network_ms=network_ms, layer_sum_ms=6.0, overhead_ms=OVERHEAD,
                        calibration_point=point)


def network_estimate(t: LatencyTable, fractions: dict) -> float:
    return sum(t.estimated_layer_ms(name, *fractions.get(name, (1.0, 1.0))) for name in t.grids)


def test_the_line_passes_through_both_measured_points():
    t = table()
    # b = (10 − 4) / (5.6 − 1.1) = 4/3; a = 10 − 4/3 · 5.6 = 38/15.
    assert t.fit.points == 2 and t.fit.fallback == ""
    assert t.fit.scale == pytest.approx(4 / 3) and t.fit.fixed_ms == pytest.approx(38 / 15)
    # stem.0 at (0.5, 1.0): own 0.5 − 0.1 = 0.4 ms → 4/3 · 0.4 + (38/15) / 4 = 7/6 ms.
    assert t.estimated_layer_ms("stem.0", 0.5, 1.0) == pytest.approx(7 / 6)
    assert network_estimate(t, {}) == pytest.approx(10.0)  # the dense network, as measured
    assert network_estimate(t, HALF) == pytest.approx(4.0)  # the half-width network, as measured
    # One factor fitted at the dense point alone, (10 − 0.1) / 5.6, puts the half network at 9.9/5.6 · 1.1 + 0.1.
    assert network_estimate(table(None), HALF) == pytest.approx(9.9 / 5.6 * 1.1 + 0.1)
    plan = make_plan(ResidualNet(), SHAPE, None, None, budget={"latency": 100.0}, latency_table=t)
    assert plan.latency["before_ms"] == pytest.approx(10.0, abs=1e-4)
    assert plan.latency["source"].endswith("calibrated to the measured dense and half-width networks")
    text = report.latency_table_text(t, "ResidualNet", "t.json")
    assert "half-width network 4.000 ms measured; estimate = 2.533 ms fixed + 1.333 × the layers' own times" in text


@pytest.mark.parametrize("point_ms, fractions, why", [
    (4.0, {name: [1.0, 1.0] for name in SCALES}, "the layers at half width are not faster than dense"),
    (12.0, None, "the half-width network is not faster than the dense one"),
    # b = (10 − 1) / 4.5 = 2, a = 10 − 2 · 5.6 = −1.2
    (1.0, None, "the fixed part would be -1.200 ms, outside 0..network_ms"),
])
def test_a_degenerate_point_falls_back_to_one_point_and_says_so(point_ms, fractions, why):
    t, old = table(point_ms, fractions), table(None)
    assert (t.fit.points, t.fit.fallback) == (1, why)
    assert t.fit.scale == pytest.approx(9.9 / 5.6) and t.fit.fixed_ms == OVERHEAD
    assert all(t.estimated_layer_ms(name, fi, fo) == old.estimated_layer_ms(name, fi, fo)
               for name in SCALES for fi in (0.3, 1.0) for fo in (0.5, 1.0))
    assert t.describe().endswith(f", board, one-point calibration ({why})")
    plan = make_plan(ResidualNet(), SHAPE, None, None, budget={"latency": 100.0}, latency_table=t)
    assert f"one-point calibration ({why})), calibrated to the measured dense network" in plan.latency["source"]
    assert f"the half-width network ({point_ms:.3f} ms) is not used: {why}" in report.latency_table_text(t, "n", "t")


def test_an_old_table_file_without_the_point_estimates_as_before(tmp_path):
    data = table(None).to_dict()
    del data["calibration_point"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = LatencyTable.load(tmp_path / "old.json")
    assert old.calibration_point is None and old.fit.points == 1 and old.fit.fallback == ""
    # (10 − 0.1) / 5.6 · (0.5 − 0.1) + 0.1 / 4
    assert old.estimated_layer_ms("stem.0", 0.5, 1.0) == pytest.approx(9.9 / 5.6 * 0.4 + 0.025)
    assert old.describe() == "onnxruntime 1.0, fp32, 1 thread, board"
    plan = make_plan(ResidualNet(), SHAPE, None, None, budget={"latency": 100.0}, latency_table=old)
    assert plan.latency["source"] == ("per-layer latency table (onnxruntime 1.0, fp32, 1 thread, board), calibrated "
                                      "to the measured dense network")


def test_the_point_round_trips_and_a_bad_one_is_refused(tmp_path):
    table().save(tmp_path / "t.json")
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded == table() and loaded.calibration_point["fractions"] == HALF and loaded.fit.points == 2
    for bad in ({"network_ms": 0.0, "fractions": HALF}, {"network_ms": 4.0, "fractions": {"nowhere": [0.5, 0.5]}},
                {"network_ms": 4.0, "fractions": {"head": [0.0, 0.5]}},
                {"network_ms": 4.0, "fractions": {"head": [1.5]}},
                {"fractions": HALF}, [4.0]):
        data = {**table().to_dict(), "calibration_point": bad}
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(cdprune.CdpruneError, match="is not a valid cdprune latency table"):
            LatencyTable.load(tmp_path / "bad.json")


def test_the_half_width_copy_halves_every_unit_as_the_planner_rounds():
    net = ResidualNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    half, fractions = half_width_copy(net, SHAPE)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the model itself is left alone
    # stem/body.3 share a unit of 16 channels: 8 stay; body.0's 24 lose 12 and keep 12, rounded down to 8.
    assert (half.stem[0].out_channels, half.body[0].out_channels, half.body[3].out_channels) == (8, 8, 8)
    assert fractions == {"stem.0": (1.0, 0.5), "body.0": (0.5, 1 / 3), "body.3": (1 / 3, 0.5), "head": (0.5, 1.0)}
    assert half(torch.zeros(1, *SHAPE)).shape == (1, 10)


def test_a_built_table_carries_the_point(tmp_path):
    half, fractions = half_width_copy(SeparableNet(), SHAPE)
    t = cdprune.build_latency_table(SeparableNet(), SHAPE, "torch", 1, repeats=2, min_time_s=0,
                                    calibration_model=half, calibration_fractions=fractions)
    point = t.calibration_point
    assert point["fractions"] == {name: list(pair) for name, pair in fractions.items()}
    assert point["network_ms"] == point["network_timing"]["p50_ms"] > 0
    assert network_estimate(t, {}) == pytest.approx(t.network_ms)
    # Layers this small time as noise, so the fit may be degenerate: then the table says why.
    if t.fit.points == 2:
        assert network_estimate(t, point["fractions"]) == pytest.approx(point["network_ms"])
    else:
        assert f"one-point calibration ({t.fit.fallback})" in t.describe() and t.fit.fallback
    t.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json") == t


@pytest.mark.parametrize("given, message", [
    ({"calibration_fractions": {"head": (0.5, 1.0)}}, "needs both the half-width model and its layers' fractions"),
    ({"calibration_model": SeparableNet()}, "needs both the half-width model and its layers' fractions"),
    ({"calibration_model": SeparableNet(), "calibration_fractions": {"nowhere": (0.5, 0.5)}},
     "layer 'nowhere', which the model does not run"),
    ({"calibration_model": SeparableNet(), "calibration_fractions": {"head": (0.5, 2.0)}}, "fractions in \\(0, 1\\]"),
])
def test_a_half_given_point_is_refused_before_any_timing(given, message):
    with pytest.raises(cdprune.CdpruneError, match=message):
        cdprune.build_latency_table(SeparableNet(), SHAPE, "torch", 1, repeats=2, min_time_s=0, **given)


def test_this_machines_cached_tables_carry_the_point(tmp_path, monkeypatch):
    monkeypatch.setenv("CDPRUNE_CACHE", str(tmp_path))
    # A latency budget for the baselines builds this machine's table with the point...
    cdprune.Budget({"latency": 1000.0}).latency_model(SeparableNet(), SHAPE)
    (path,) = (tmp_path / "latency").iterdir()
    _, fractions = half_width_copy(SeparableNet(), SHAPE)
    assert json.loads(path.read_text())["calibration_point"]["fractions"] == {k: list(v) for k, v in fractions.items()}
    stamp = path.stat().st_mtime_ns
    make_plan(SeparableNet(), SHAPE, None, None, budget={"latency": 1000.0})  # ...which make_plan reads back
    assert path.stat().st_mtime_ns == stamp
    # A cached table from before the point was kept is measured again, with it.
    data = json.loads(path.read_text())
    del data["calibration_point"]
    path.write_text(json.dumps(data))
    plan = make_plan(SeparableNet(), SHAPE, None, None, budget={"latency": 1000.0})
    assert json.loads(path.read_text())["calibration_point"]["fractions"] == {k: list(v) for k, v in fractions.items()}
    assert plan.latency["before_ms"] == pytest.approx(LatencyTable.load(path).network_ms, abs=1e-4)
