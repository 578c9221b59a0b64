"""Energy as a resource: per-layer accounting, mode ea, energy budgets, energy models and their calibration.

The reference network is tests/nets.py's EnergyNet at 3×16×16. Its energy, written out by hand from
docs/design.md "Energy" (4 bytes per value; MACs = C_out·C_in·K·K·H_out·W_out):

    layer  MACs                   values read and written (weights + input + output)   bytes
    c1     8·3·1·256    =  6,144    24 +   768 (3·16·16) + 2,048 (8·16·16) = 2,840         11,360
    c2     16·8·9·64    = 73,728  1,152 + 2,048          + 1,024 (16·8·8)  = 4,224         16,896
    c3     32·16·9·16   = 73,728  4,608 + 1,024          +   512 (32·4·4)  = 6,144         24,576
    head   32·10        =    320    330 (with bias) + 32 +  10             =   372          1,488

    E_c1   = 4.6·6,144  + 160·11,360 = 28,262.4  + 1,817,600 = 1,845,862.4 pJ
    E_c2   = 4.6·73,728 + 160·16,896 = 339,148.8 + 2,703,360 = 3,042,508.8 pJ
    E_c3   = 4.6·73,728 + 160·24,576 = 339,148.8 + 3,932,160 = 4,271,308.8 pJ
    E_head = 4.6·320    + 160·1,488  = 1,472     +   238,080 =   239,552.0 pJ
    network                                                   = 9,399,232.0 pJ = 9.399232e-3 mJ

The units are c1, c2 and c3 (8, 16 and 32 channels); their energy shares are E_c / (E_c1 + E_c2 + E_c3),
that is 1,845,862.4, 3,042,508.8 and 4,271,308.8 over 9,159,680: 0.2015, 0.3322 and 0.4663. Their FLOPs
shares are 0.04, 0.48, 0.48 and their parameter shares 0.004, 0.199, 0.797, so a draw that followed
another metric would show.
"""
import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

import cdprune
from cdprune import EnergyModel, models

from nets import USER_NETS, EnergyNet
from support import recount_energy_mj, run_cli, tree

SHAPE = (3, 16, 16)
NET = str(Path(__file__).parent / "nets.py") + ":EnergyNet"
LAYER_PJ = {"c1": 1_845_862.4, "c2": 3_042_508.8, "c3": 4_271_308.8, "head": 239_552.0}
LAYER_BYTES = {"c1": 11_360, "c2": 16_896, "c3": 24_576, "head": 1_488}
NETWORK_MJ = 9_399_232.0e-9
UNIT_SHARES = np.array([1_845_862.4, 3_042_508.8, 4_271_308.8]) / 9_159_680


def digest_of(data: dict) -> str:
    """The digest a plan file carries, computed here as docs/design.md "plan.json" defines it."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def one_line_error(call, match, kind=cdprune.CdpruneError) -> str:
    with pytest.raises(kind, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# ---- per-layer accounting ------------------------------------------------------------------------

def test_layer_energies_are_the_hand_computed_ones_and_sum_to_the_network():
    prof = cdprune.profile(EnergyNet(), SHAPE, EnergyModel())
    assert {layer.name: layer.bytes_moved for layer in prof.layers} == LAYER_BYTES
    for layer in prof.layers:
        assert layer.energy_mj == pytest.approx(LAYER_PJ[layer.name] * 1e-9, rel=1e-12)
        assert layer.energy_share == pytest.approx(LAYER_PJ[layer.name] * 1e-9 / NETWORK_MJ, rel=1e-12)
    assert prof.energy_mj == pytest.approx(NETWORK_MJ, rel=1e-12)
    assert sum(layer.energy_mj for layer in prof.layers) == pytest.approx(NETWORK_MJ, rel=1e-12)
    assert prof.layer("c2").input_positions == 16 * 16 and prof.layer("c2").input_bytes == 4 * 2_048


def test_bench_estimates_the_sum_of_the_layers(tmp_path):
    # An empty sysfs: no meter, so bench estimates; its figure is the hand-computed sum of the layers.
    r = cdprune.bench(NET, input_shape=SHAPE, min_time_s=0, min_repeats=3, sysfs_root=tmp_path)
    assert r.energy["kind"] == "estimated" and r.energy["static_mj"] == 0
    assert r.energy_mj == pytest.approx(NETWORK_MJ, rel=1e-12)
    assert r.energy["bytes_moved"] == sum(LAYER_BYTES.values())
    assert r.energy["compute_mj"] == pytest.approx(4.6 * (6_144 + 2 * 73_728 + 320) * 1e-9, rel=1e-12)


def test_a_device_model_prices_the_same_traffic_and_adds_its_static_power(tmp_path):
    path = tmp_path / "board.json"
    path.write_text(json.dumps({"pj_per_mac": 1, "pj_per_byte": 2, "static_w": 0.5, "device": "my board"}))
    board = EnergyModel.load(path)
    prof = cdprune.profile(EnergyNet(), SHAPE, board)
    # 1 pJ per MAC and 2 pJ per byte over the table above: 153,920 MACs and 54,320 bytes.
    assert prof.energy_mj == pytest.approx((153_920 + 2 * 54_320) * 1e-9, rel=1e-12)
    from cdprune.measure import estimate_energy

    estimate = estimate_energy(prof, board, latency_ms=3.0)
    assert estimate.static_mj == pytest.approx(1.5)  # 0.5 W for 3 ms
    assert estimate.energy_mj == pytest.approx(1.5 + (153_920 + 2 * 54_320) * 1e-9, rel=1e-12)
    assert "my board" in estimate.source and estimate.kind == "estimated"


def test_profile_json_has_energy_per_layer_and_in_total(capsys):
    code, out, _ = run_cli(capsys, "profile", NET, "--input", "3,16,16", "--json")
    data = json.loads(out)
    assert code == 0 and data["energy"]["energy_mj"] == pytest.approx(NETWORK_MJ, rel=1e-12)
    assert data["energy"]["kind"] == "estimated" and data["bytes_moved"] == 54_320
    assert [layer["energy_mj"] for layer in data["layers"]] == pytest.approx([v * 1e-9 for v in LAYER_PJ.values()])
    assert sum(layer["energy_share"] for layer in data["layers"]) == pytest.approx(1.0)


def test_profile_table_shows_energy_and_share(capsys):
    code, out, _ = run_cli(capsys, "profile", NET, "--input", "3,16,16")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert code == 0 and "energy (est.)" in out
    assert rows["c3"][-2:] == ["4.27uJ", "45.4%"]  # 4,271,308.8 of 9,399,232 pJ
    assert rows["total"][-2:] == ["9.40uJ", "100%"]


# ---- mode ea -------------------------------------------------------------------------------------

def test_ea_draws_units_in_proportion_to_their_energy_share():
    # Each plan stops after its first draw (one channel of any unit saves at least 1.28 % of the energy, more
    # than the target); over 300 seeds the unit drawn first follows the hand-computed energy shares. One
    # channel at a time (round_to 1), every unit has a step within five points of the target (c1's one
    # channel saves 4.98 %), so the last-step rule keeps the drawn unit.
    net, draws = EnergyNet(), 300
    counts = np.zeros(3)
    for seed in range(draws):
        plan = cdprune.make_plan(net, SHAPE, "ea", 0.012, seed=seed, round_to=1)
        assert plan.steps == 1
        (drawn,) = [i for i, u in enumerate(plan.units) if len(u.kept) < u.channels]
        counts[drawn] += 1
    expected = draws * UNIT_SHARES
    assert ((counts - expected) ** 2 / expected).sum() < 18.4  # chi-square, 2 degrees of freedom, p = 1e-4
    flops_shares = np.array([0.04, 0.48, 0.48])
    assert ((counts - draws * flops_shares) ** 2 / (draws * flops_shares)).sum() > 100  # not FLOPs-weighted


def test_ea_reaches_its_target_and_the_pruned_profile_has_the_plans_energy():
    for name, net in USER_NETS.items():
        plan = cdprune.make_plan(net(), SHAPE, "ea", 0.4, seed=1)
        assert plan.mode == "ea" and plan.energy["after_mj"] <= 0.6 * plan.energy["before_mj"], name
        small = cdprune.apply_plan(net(), cdprune.PruningPlan.from_dict(plan.to_dict()))
        assert cdprune.profile(small, SHAPE, plan.energy_model).energy_mj == plan.energy["after_mj"]  # to the bit
        assert recount_energy_mj(small, SHAPE) == pytest.approx(plan.energy["after_mj"], rel=1e-12)


# ---- energy budgets ------------------------------------------------------------------------------

def test_parse_energy_budgets():
    assert cdprune.parse_budget("energy=5mJ") == {"energy": 5.0}
    assert cdprune.parse_budget("energy=500uJ,flops=1M") == {"energy": 0.5, "flops": 1e6}
    assert cdprune.parse_budget("energy=0.005J") == {"energy": 5.0}
    assert cdprune.parse_budget("energy=250µJ") == {"energy": 0.25}
    for bad in ("energy=5", "energy=5ms", "energy=-1mJ", "energy=nanmJ"):
        one_line_error(lambda: cdprune.parse_budget(bad), r"budget \(--budget\)")


@pytest.mark.parametrize("model, shape, budget", [
    ("alexnet", (3, 32, 32), {"energy": "1.5mJ"}),
    ("separable", SHAPE, {"energy": "20uJ", "flops": "300K"}),  # combined, auto mode: both over at first
])
def test_an_energy_budget_holds_when_recounted_independently(model, shape, budget):
    build = (lambda: models.create("alexnet")) if model == "alexnet" else USER_NETS[model]
    plan = cdprune.make_plan(build(), shape, None, None, budget=budget)
    limit = cdprune.parse_budget(f"energy={budget['energy']}")["energy"]
    small = cdprune.apply_plan(build(), plan)
    assert recount_energy_mj(build(), shape) > limit  # the budget had work to do
    assert recount_energy_mj(small, shape) <= limit
    assert recount_energy_mj(small, shape) == pytest.approx(plan.energy["after_mj"], rel=1e-12)
    if "flops" in budget:
        assert plan.after.flops <= 300e3


def test_an_energy_budget_below_the_floor_names_the_least_reachable_energy(capsys, tmp_path):
    # Without rounding (round_to 1), at floor 0.1 the units keep 1, 2 and 4 channels: c1 3→1 (1x1), c2 1→2, c3 2→4, head 4→10 with bias:
    #   c1 4.6·768  + 160·4·(3 + 768 + 256)  = 3,532.8 + 657,280 = 660,812.8 pJ
    #   c2 4.6·1152 + 160·4·(18 + 256 + 128) = 5,299.2 + 257,280 = 262,579.2 pJ
    #   c3 4.6·1152 + 160·4·(72 + 128 + 64)  = 5,299.2 + 168,960 = 174,259.2 pJ
    #   head 4.6·40 + 160·4·(50 + 4 + 10)    =   184   +  40,960 =  41,144.0 pJ, in all 1,138,795.2 pJ = 1.14 uJ
    message = one_line_error(lambda: cdprune.make_plan(EnergyNet(), SHAPE, None, None, budget="energy=1uJ", round_to=1),
                             "budget energy=1.00uJ cannot be met", cdprune.UnreachableTarget)
    assert "the least this model reaches with floor 0.1 is 1.14uJ" in message
    plan = cdprune.make_plan(EnergyNet(), SHAPE, None, None, budget="energy=1.1388uJ", round_to=1)  # just above
    assert plan.energy["after_mj"] == pytest.approx(1_138_795.2e-9, rel=1e-12)

    out = tmp_path / "plan.json"
    code, stdout, err = run_cli(capsys, "prune", NET, "--input", "3,16,16", "--budget", "energy=1uJ", "--round-to", "1", "--out", out)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and "1.14uJ" in err and not out.exists()


# ---- energy models: files, plans ---------------------------------------------------------------

def test_the_plan_records_the_energy_model_and_old_plans_load(tmp_path):
    board = EnergyModel(2.0, 50.0, 0.0, "board X")
    plan = cdprune.make_plan(EnergyNet(), SHAPE, "fa", 0.3, energy_model=board)
    assert plan.energy["model"] == {"pj_per_mac": 2.0, "pj_per_byte": 50.0, "static_w": 0.0, "device": "board X"}
    assert plan.energy_model == board
    loaded = cdprune.PruningPlan.load(plan.save(tmp_path / "plan.json"))
    assert loaded == plan and "energy" in json.loads((tmp_path / "plan.json").read_text())

    # A plan that involves no energy has no energy field: its file and digest are what they were before it existed.
    plain = cdprune.make_plan(EnergyNet(), SHAPE, "fa", 0.3)
    assert "energy" not in plain.to_dict() and plain.energy_model is None
    assert plain.to_dict()["digest"] == digest_of(plain.to_dict())
    assert cdprune.apply_plan(EnergyNet(), plain) is not None


def test_an_edited_energy_model_in_a_plan_is_refused(tmp_path):
    plan = cdprune.make_plan(EnergyNet(), SHAPE, "ea", 0.3)
    data = copy.deepcopy(plan.to_dict())
    data["energy"]["model"]["pj_per_byte"] = 1.0  # cheaper bytes, same stated figures
    data["digest"] = digest_of(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    edited = cdprune.PruningPlan.load(path)  # the digest holds: only apply_plan's check can catch it
    one_line_error(lambda: cdprune.apply_plan(EnergyNet(), edited), "states energy")


BAD_MODELS = {
    "missing.json": None,
    "notjson.json": "{pj_per_mac: 4.6",
    "list.json": "[4.6, 160]",
    "negative.json": '{"pj_per_mac": -1, "pj_per_byte": 160}',
    "text.json": '{"pj_per_mac": "4.6", "pj_per_byte": 160}',
    "infinite.json": '{"pj_per_mac": 4.6, "pj_per_byte": 1e400}',
    "lacking.json": '{"pj_per_mac": 4.6}',
    "typo.json": '{"pj_per_mac": 4.6, "pj_per_bytes": 160}',
    "zero.json": '{"pj_per_mac": 0, "pj_per_byte": 0}',
}


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
@pytest.mark.parametrize("command", [["prune", "alexnet", "--out", "{dir}/plan.json"], ["profile", "alexnet"],
                                     ["bench", "alexnet", "--calibrate-energy", "{dir}/calibrated.json"]])
def test_a_bad_energy_model_file_is_one_line_exit_2_and_nothing_written(capsys, tmp_path, name, command):
    path = tmp_path / name
    if BAD_MODELS[name] is not None:
        path.write_text(BAD_MODELS[name])
    before = tree(tmp_path)
    argv = [part.format(dir=tmp_path) for part in command]
    code, out, err = run_cli(capsys, *argv, "--energy-model", path)
    assert code == 2 and out == "" and err.startswith("cdprune: error:") and err.count("\n") == 1, err
    assert "energy model" in err and "--energy-model" in err and "Traceback" not in err
    assert tree(tmp_path) == before


# ---- calibration -------------------------------------------------------------------------------

def fake_board(root: Path, milliwatts: int) -> None:
    """A Jetson-style INA3221 tree whose board input rail draws a constant `milliwatts`."""
    rails = root / "sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0"
    rails.mkdir(parents=True)
    (rails / "rail_name_0").write_text("VDD_IN\n")
    (rails / "in_power0_input").write_text(f"{milliwatts}\n")


def test_calibration_reproduces_the_measured_energy(tmp_path):
    fake_board(tmp_path / "sys-root", 5000)  # 5 W while the model runs: a known energy per second
    out = tmp_path / "calibrated.json"
    started = time.perf_counter()
    r = cdprune.bench(NET, input_shape=SHAPE, min_time_s=0.3, min_repeats=20, sysfs_root=tmp_path / "sys-root",
                      calibrate_energy=out)
    whole_call_s = time.perf_counter() - started
    assert r.energy["kind"] == "measured" and r.energy["source"].startswith("Jetson INA3221")
    # The meter integrates 5 W from just before the timed loop to just after it.
    assert 5.0 * r.timed_s <= r.energy["joules"] < 5.0 * whole_call_s
    assert r.energy_mj == pytest.approx(r.energy["joules"] * 1e3 / r.repeats, rel=1e-12)
    written = EnergyModel.load(out)
    assert r.calibrated["path"] == str(out) and r.calibrated["model"] == written.to_dict()
    # One factor on both coefficients: the 45 nm split between MACs and bytes stays, and the estimate for
    # this model (9.399232e-3 mJ at the default) becomes the measured figure.
    factor = r.energy_mj / NETWORK_MJ
    assert written.pj_per_mac == pytest.approx(4.6 * factor, rel=1e-9)
    assert written.pj_per_byte == pytest.approx(160 * factor, rel=1e-9)
    assert cdprune.profile(EnergyNet(), SHAPE, written).energy_mj == pytest.approx(r.energy_mj, rel=0.01)
    assert recount_energy_mj(EnergyNet(), SHAPE, written.pj_per_mac, written.pj_per_byte) == \
        pytest.approx(r.energy["joules"] * 1e3 / r.repeats, rel=0.01)  # the meter's joules per inference
    assert "calibrated" in written.source and "Jetson INA3221" in written.source


def test_calibration_without_a_meter_names_the_meters_and_writes_nothing(tmp_path):
    out = tmp_path / "calibrated.json"
    message = one_line_error(lambda: cdprune.bench(NET, input_shape=SHAPE, min_time_s=0, min_repeats=3,
                                                   sysfs_root=tmp_path, calibrate_energy=out), "no energy meter")
    assert "RAPL" in message and "NVML" in message and "INA3221" in message
    assert not out.exists()
    fake_board(tmp_path, 5000)
    one_line_error(lambda: cdprune.bench(NET, input_shape=SHAPE, batch=4, sysfs_root=tmp_path, calibrate_energy=out),
                   "batch-1")
    assert not out.exists()


def test_compare_at_an_energy_target_refuses_the_baselines_before_training(capsys, tmp_path):
    out = tmp_path / "compare"
    code, stdout, err = run_cli(capsys, "compare", "--model", "alexnet", "--data", "synthetic", "--metric", "energy",
                                "--methods", "dense,ea,uniform", "--out", out)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "method uniform cannot aim at energy" in err and not out.exists()


@pytest.mark.parametrize("edit, why", [
    (lambda e: e.pop("model"), "energy is not a model"),
    (lambda e: e.update(after_mj="5mJ"), "energy is not a model"),
    (lambda e: e["model"].update(pj_per_mac=-4.6), "pj_per_mac=-4.6"),
])
def test_a_plan_with_a_malformed_energy_field_is_one_line(tmp_path, edit, why):
    data = cdprune.make_plan(EnergyNet(), SHAPE, "ea", 0.3).to_dict()
    edit(data["energy"])
    data["digest"] = digest_of(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    one_line_error(lambda: cdprune.PruningPlan.load(path), f"not a valid cdprune plan .*{why}")
