"""Bench: latency, throughput, memory, CPU use and energy, measured in a fresh process; the energy meters."""
import json
import os
import sys
import threading
import time
import types

import pytest

import cdprune
from cdprune import models
from cdprune.complexity import profile
from cdprune.measure import Ina3221Meter, NvmlMeter, RaplMeter, discover_meter
from cdprune.deploy import bench
from cdprune.measure.energy import SOURCE
from cdprune.measure.meters import RAPL_SOURCE
from cdprune.formatting import human_count
from support import recount_energy_mj, run_cli as run

SHAPE = (3, 32, 32)
QUICK = ["--min-time", "0.2", "--min-repeats", "20"]


def assert_one_line_error(code, err, message):
    assert code == 2 and err.startswith("cdprune: error:") and len(err.strip().splitlines()) == 1
    assert message in err and "Traceback" not in err


# ---- the measurement ----------------------------------------------------------------------------

def test_bench_json_on_torch(capsys):
    code, out, _ = run(capsys, "bench", "alexnet", "--batch", "2", "--threads", "1", "--json", *QUICK)
    r = json.loads(out)
    assert code == 0 and (r["model"], r["method"], r["runtime"], r["device"]) == ("alexnet", "dense", "torch", "cpu")
    assert r["batch"] == 2 and r["threads"] == 1 and r["runtime_version"].startswith("torch ")
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
    assert r["throughput_per_s"] == pytest.approx(2 * 1000 / r["p50_ms"])
    assert r["repeats"] >= 20 and r["timed_s"] >= 0.2
    assert r["repeats"] * r["mean_ms"] / 1000 == pytest.approx(r["timed_s"], rel=0.2)  # the loop is the model
    assert r["peak_rss_bytes"] > r["rss_increase_bytes"] > 4 * r["params"]  # at least the fp32 weights
    assert r["peak_rss_scope"] == ("inference" if sys.platform == "linux" else "process")
    assert 0 < r["cpu_percent"] <= 100 * os.cpu_count() + 5
    assert r["cpu_utilisation"] == pytest.approx(r["cpu_percent"] / 100 / r["threads"])
    assert r["precision"] == "fp32" and r["dense_p50_ms"] is None and r["speedup"] is None  # dense: nothing to compare

    totals = profile(models.create("alexnet"), SHAPE).totals
    assert (r["params"], r["flops"], r["memory_bytes"]) == (totals.params, totals.flops, totals.memory_bytes)
    meter = discover_meter("cpu")  # None here: no RAPL on this machine, so the energy is estimated
    if meter is None:
        assert r["energy"]["kind"] == "estimated" and r["energy"]["source"] == SOURCE
        # Every conv and linear layer's MACs and bytes moved, counted independently (docs/design.md "Energy").
        assert r["energy_mj"] == pytest.approx(recount_energy_mj(models.create("alexnet"), SHAPE), rel=1e-12)
    else:
        assert r["energy"]["kind"] == "measured" and r["energy"]["source"] == meter.source


def test_bench_onnxruntime_on_a_pruned_run(pruned_run, capsys):
    files = sorted(pruned_run.iterdir())
    code, out, _ = run(capsys, "bench", pruned_run, "--runtime", "onnxruntime", "--json", *QUICK)
    r = json.loads(out)
    recorded = json.loads((pruned_run / "metrics.json").read_text())
    assert code == 0 and r["runtime"] == "onnxruntime" and r["runtime_version"].startswith("onnxruntime ")
    assert (r["method"], r["run_dir"]) == ("fa-0.5", str(pruned_run))
    assert (r["flops"], r["params"]) == (recorded["flops"], recorded["params"])
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["threads"] >= 1
    assert 0 < r["cpu_utilisation"] and r["peak_rss_bytes"] > 0
    assert sorted(pruned_run.iterdir()) == files  # the export went to a temporary directory
    # A pruned run is measured against the dense model of its architecture, in the same runtime.
    dense = json.loads((pruned_run / "plan.json").read_text())["before"]
    assert r["dense_flops"] == dense["flops"] == profile(models.create("alexnet"), SHAPE).totals.flops
    assert r["flops_ratio"] == pytest.approx(dense["flops"] / recorded["flops"])
    assert r["dense_p50_ms"] > 0 and r["speedup"] == pytest.approx(r["dense_p50_ms"] / r["p50_ms"])
    assert r["speedup_per_flops"] == pytest.approx(r["speedup"] / r["flops_ratio"])


def test_bench_table_for_a_model_pruned_by_plan(pruned_run, capsys):
    code, out, _ = run(capsys, "bench", "alexnet", "--plan", pruned_run / "plan.json", "--threads", "1", *QUICK)
    plan = cdprune.PruningPlan.load(pruned_run / "plan.json")
    rows = {line.split("  ")[0]: line.split()[-1] for line in out.splitlines()[3:] if line and "  " in line}
    assert code == 0 and out.startswith("alexnet (fa-0.5) · torch")
    assert rows["FLOPs (MACs)"] == human_count(plan.after.flops) and rows["params"] == human_count(plan.after.params)
    assert {"latency p50", "latency p90", "latency p99", "throughput", "peak memory (RSS)", "CPU use",
            "energy / inference", "dense latency p50", "speed-up over dense"} <= rows.keys()
    speedup = [line for line in out.splitlines() if line.startswith("speed-up over dense")][0]
    assert f"for {plan.before.flops / plan.after.flops:.2f}× fewer FLOPs" in speedup
    meter = discover_meter("cpu")
    assert out.splitlines()[-1] == f"energy: {SOURCE if meter is None else meter.source}"


def test_bench_int8_times_the_quantised_model(pruned_run, capsys):
    code, out, err = run(capsys, "bench", pruned_run, "--runtime", "onnxruntime", "--int8", "--calibration-images", "8",
                         "--threads", "1", "--json", *QUICK)
    r = json.loads(out)
    assert code == 0, err
    assert (r["precision"], r["runtime"], r["threads"]) == ("int8", "onnxruntime", 1)
    assert r["p50_ms"] > 0 and r["speedup"] == pytest.approx(r["dense_p50_ms"] / r["p50_ms"])
    assert "· int8 ·" in cdprune.report.bench_text(cdprune.BenchResult(**r)).splitlines()[0]


# ---- energy meters on a fake sysfs --------------------------------------------------------------

def fake_rapl(root, counters: dict[str, int], max_range: int = 2**32) -> None:
    """A /sys/class/powercap tree: `intel-rapl` (the control type) and one directory per domain."""
    base = root / "sys/class/powercap"
    (base / "intel-rapl").mkdir(parents=True)
    for domain, value in counters.items():
        (base / domain).mkdir()
        (base / domain / "max_energy_range_uj").write_text(f"{max_range}\n")
        set_counter(root, domain, value)


def set_counter(root, domain: str, value: int) -> None:
    path = root / "sys/class/powercap" / domain / "energy_uj"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)  # a reader in another process never sees an empty file


def test_rapl_sums_package_domains_only(tmp_path):
    fake_rapl(tmp_path, {"intel-rapl:0": 1_000_000, "intel-rapl:1": 5_000_000, "intel-rapl:0:0": 7})
    meter = discover_meter("cpu", tmp_path)
    assert isinstance(meter, RaplMeter) and meter.source == RAPL_SOURCE
    meter.start()
    set_counter(tmp_path, "intel-rapl:0", 3_500_000)  # +2.5 J
    set_counter(tmp_path, "intel-rapl:1", 5_250_000)  # +0.25 J
    set_counter(tmp_path, "intel-rapl:0:0", 900_000_000)  # a sub-domain: already inside package 0
    assert meter.stop() == pytest.approx(2.75)


def test_rapl_counter_wrap(tmp_path):
    fake_rapl(tmp_path, {"intel-rapl:0": 262_143_000_000}, max_range=262_143_328_850)
    meter = RaplMeter(tmp_path)
    meter.start()
    set_counter(tmp_path, "intel-rapl:0", 1_000_000)
    # 328_850 µJ up to the wrap, then 1_000_000 µJ after it
    assert meter.stop() == pytest.approx(1.32885)


def test_no_meter_on_an_empty_or_unreadable_sysfs(tmp_path):
    assert discover_meter("cpu", tmp_path) is None
    (tmp_path / "sys/class/powercap/intel-rapl:0").mkdir(parents=True)  # no readable energy_uj
    assert not RaplMeter(tmp_path).available() and discover_meter("cpu", tmp_path) is None
    fake_rapl(tmp_path / "gpu", {"intel-rapl:0": 0})
    assert discover_meter("cuda", tmp_path / "gpu") is None  # RAPL does not see a GPU run


def test_jetson_rails_integrate_the_input_rail(tmp_path):
    rails = tmp_path / "sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0"
    rails.mkdir(parents=True)
    for i, (name, mw) in enumerate([("POM_5V_IN", 5000), ("POM_5V_GPU", 2000), ("POM_5V_CPU", 1000)]):
        (rails / f"rail_name_{i}").write_text(name + "\n")
        (rails / f"in_power{i}_input").write_text(f"{mw}\n")
    meter = discover_meter("cpu", tmp_path)
    assert isinstance(meter, Ina3221Meter) and meter.source == "Jetson INA3221 rails: POM_5V_IN"
    before = time.perf_counter()
    meter.start()
    after_start = time.perf_counter()
    time.sleep(0.2)
    before_stop = time.perf_counter()
    joules = meter.stop()
    after = time.perf_counter()
    assert 5.0 * (before_stop - after_start) <= joules <= 5.0 * (after - before)  # 5 W, the board input alone


def test_nvml_serves_cuda_runs(tmp_path, monkeypatch):
    counter_mj = [1_000_000]
    fake = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
                                 nvmlDeviceGetName=lambda handle: f"Fake {handle}",
                                 nvmlDeviceGetTotalEnergyConsumption=lambda handle: counter_mj[0])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert discover_meter("cpu", tmp_path) is None  # NVML is for CUDA runs only
    meter = discover_meter("cuda:1", tmp_path)
    assert isinstance(meter, NvmlMeter) and meter.source == "NVML total energy (whole GPU Fake gpu1)"
    meter.start()
    counter_mj[0] += 2500
    assert meter.stop() == pytest.approx(2.5)


def test_bench_reports_measured_energy_from_rapl(tmp_path):
    fake_rapl(tmp_path, {"intel-rapl:0": 0})
    done, counter, started = threading.Event(), [0], time.perf_counter()

    def burn():  # the fake CPU package draws 10 W: 1000 µJ every 0.1 ms of counter time
        while not done.wait(0.005):
            counter[0] = int((time.perf_counter() - started) * 10e6)
            set_counter(tmp_path, "intel-rapl:0", counter[0])

    thread = threading.Thread(target=burn, daemon=True)
    thread.start()
    try:
        r = bench("alexnet", threads=1, min_time_s=0.2, min_repeats=20, sysfs_root=tmp_path)
    finally:
        done.set()
        thread.join()
    whole_call_s = time.perf_counter() - started
    energy = r.energy
    assert energy["kind"] == "measured" and energy["source"] == RAPL_SOURCE
    assert energy["inputs"] == r.repeats * r.batch
    assert r.energy_mj == pytest.approx(energy["joules"] * 1e3 / energy["inputs"])
    # The loop lasted timed_s at 10 W; the counter moves in steps of 5 ms or more, which blurs the edges.
    assert energy["joules"] == pytest.approx(10 * r.timed_s, rel=0.5) and energy["joules"] < 10 * whole_call_s


# ---- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["bench", "vgg99"], "'vgg99' is neither a run directory nor a registered model"),
    (["bench", "alexnet", "--batch", "0"], "batch must be at least 1"),
    (["bench", "alexnet", "--threads", "0"], "threads must be at least 1"),
    (["bench", "alexnet", "--device", "gpu"], "unknown device 'gpu'"),
    (["bench", "alexnet", "--int8"],
     "int8 models run in ONNX Runtime, ExecuTorch or LiteRT: add --runtime onnxruntime, executorch or litert"),
    (["bench", "alexnet", "--int8", "--runtime", "onnxruntime"], "calibrated on a run's training images: give a run"),
])
def test_bad_arguments_are_one_line_exit_2(capsys, argv, message):
    assert_one_line_error(*run(capsys, *argv)[::2], message)


def test_directory_without_metrics_is_refused(tmp_path, capsys):
    assert_one_line_error(*run(capsys, "bench", tmp_path)[::2], "metrics.json missing")


def test_onnxruntime_missing_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert_one_line_error(*run(capsys, "bench", "alexnet", "--runtime", "onnxruntime")[::2],
                          "pip install 'cdprune[deploy]'")


def test_a_failure_in_the_measuring_process_is_one_line(pruned_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("metrics.json", "plan.json", "run.json"):
        (broken / name).write_bytes((pruned_run / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert_one_line_error(*run(capsys, "bench", broken, *QUICK)[::2], "the measurement failed: cannot read weights")
