"""Benchmark a model on this device: latency, throughput, memory, CPU use and energy per inference.

The measurement runs in a fresh child process (`cdprune.deploy.worker`), so the figures
belong to the model and its runtime alone, not to whatever this process did before.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import models
from ..complexity import Totals, profile
from ..errors import CdpruneError
from ..measure.energy import EnergyModel, calibrate, energy_model_of, estimate_energy
from ..measure.meters import METERS_LOOKED_FOR, discover_meter
from .export import export_model, require_deploy
from ..pruning import PruningPlan
from ..records import Record
from ..runs import build_model, load_run, plan_run_name, read_metrics, trusted_reference

RUNTIMES = ("torch", "onnxruntime")
DEFAULT_INPUT = (3, 32, 32)


@dataclass(frozen=True)
class BenchResult(Record):
    """One benchmark. Times in ms, memory in bytes, energy in mJ per input, FLOPs in MACs per input."""

    model: str  # the model reference (a registered name or module:callable)
    method: str  # the run name (see cdprune.runs.run_name)
    run_dir: str | None
    runtime: str  # "torch" or "onnxruntime"
    runtime_version: str
    device: str  # "cpu", "cuda", ...
    device_name: str
    batch: int
    threads: int  # intra-op threads
    input_shape: list[int]
    num_classes: int
    params: int
    flops: int
    memory_bytes: int  # activation memory, from the profile
    p50_ms: float  # latency of one batch
    p90_ms: float
    p99_ms: float
    mean_ms: float
    repeats: int  # timed runs, after warm-up
    timed_s: float  # wall time of the timed loop
    throughput_per_s: float  # inputs per second at the median latency
    peak_rss_bytes: int  # peak resident memory of the measuring process while it runs the model
    rss_increase_bytes: int  # that peak minus its RSS just before the model was loaded
    peak_rss_scope: str  # "inference": warm-up and timing only (Linux); "process": loading included
    cpu_percent: float  # process CPU time ÷ wall time in the timed loop, in % of one core
    cpu_utilisation: float  # the same as a fraction of the `threads` cores it may use
    energy_mj: float  # per input
    energy: dict  # kind ("measured" or "estimated"), source and the details
    calibrated: dict | None = None  # with calibrate_energy: the energy model written and where


def bench(source: str, plan_path: str | None = None, runtime: str = "torch", batch: int = 1, threads: int | None = None,
          input_shape=None, num_classes: int = 10, min_time_s: float = 2.0, *, min_repeats: int = 50,
          device: str = "cpu", sysfs_root: str = "/", model: str | None = None,
          model_args: dict | None = None, energy_model: EnergyModel | str | None = None,
          calibrate_energy: str | Path | None = None) -> BenchResult:
    """Benchmark `source`: a run directory, or a model reference (pruned by the plan file `plan_path`, if given).

    The timed loop lasts at least `min_time_s` seconds and `min_repeats` runs. `threads`
    defaults to torch's default. `input_shape` (C, H, W) and `num_classes` apply to a model
    name; a run directory brings its own. Energy is measured where `sysfs_root` or NVML
    exposes a meter, and estimated otherwise.
    energy_model: prices the estimate (an EnergyModel or a JSON file's path); default: the energy model
        the plan records, else the 45 nm default.
    calibrate_energy: a JSON file to write an energy model to, whose estimate for this model equals
        the energy the meter measures (the energy model's coefficients scaled by one factor; batch 1).
    model: the run's model reference when it is not a registered model (cdprune imports code only
    when the caller names it); model_args: keyword arguments for a model reference given as `source`.
    """
    _check_arguments(runtime, batch, threads, min_time_s, min_repeats, device)
    given_energy = None if energy_model is None else energy_model_of(energy_model)
    if calibrate_energy is not None:
        _check_calibration(calibrate_energy, batch, device, sysfs_root)
    if runtime == "onnxruntime":
        require_deploy("onnxruntime")
    source_dir = Path(source)
    if source_dir.is_dir():
        if plan_path is not None:
            raise CdpruneError(f"{source} is a run directory, which holds its own plan: drop the plan (--plan)")
        metrics = read_metrics(source_dir)
        ref = trusted_reference(metrics.model, model, source_dir)  # before the child imports anything
        name, method, run_dir = metrics.model, metrics.method, str(source_dir)
        input_shape, num_classes = tuple(metrics.input_shape), metrics.num_classes
        totals = Totals(metrics.params, metrics.flops, metrics.memory_bytes)
        plan_file = source_dir / "plan.json"
        plan = PruningPlan.load(plan_file) if plan_file.exists() else None
        # onnxruntime needs the trained weights exported; the torch worker loads the run itself, and the
        # energy profile here needs only the architecture.
        net = load_run(source_dir, ref)[0] if runtime == "onnxruntime" else \
            build_model(ref, num_classes, input_shape, plan, metrics.settings.get("model_args") or {})
    else:
        if not models.is_registered(source) and ":" not in source:
            raise CdpruneError(f"'{source}' is neither a run directory nor a registered model "
                               f"({', '.join(models.names())}) nor a reference module:callable")
        input_shape = tuple(input_shape or DEFAULT_INPUT)
        plan = PruningPlan.load(plan_path) if plan_path else None
        net = build_model(source, num_classes, input_shape, plan, model_args)  # checks that the plan fits
        totals = profile(net, input_shape).totals
        ref = source
        name, method, run_dir = source, plan_run_name(plan), None
    energy_model = given_energy or (plan.energy_model if plan is not None else None) or energy_model_of(None)
    layers = profile(net, input_shape, energy_model)  # the estimate is the sum of these layers

    # Absolute paths, so the child does not depend on sharing this process's working directory.
    spec = {"runtime": runtime, "run_dir": run_dir and str(Path(run_dir).resolve()), "model": ref,
            "model_args": model_args or {},
            "plan_path": str(Path(plan_path).resolve()) if plan_path else None,
            "num_classes": num_classes, "input_shape": list(input_shape), "onnx_path": None, "batch": batch,
            "threads": threads, "device": device, "min_time_s": min_time_s, "min_repeats": min_repeats,
            "sysfs_root": str(sysfs_root)}
    with tempfile.TemporaryDirectory(prefix="cdprune-bench-") as tmp:
        if runtime == "onnxruntime":
            spec["onnx_path"] = str(export_model(net, input_shape, "onnx", Path(tmp) / "model.onnx"))
        del net  # the child loads its own copy
        raw = run_worker(spec)

    inputs = raw["repeats"] * batch
    per_input_ms = raw["p50_ms"] / batch  # the static term's time: the median latency, per input
    estimate = estimate_energy(layers, energy_model, per_input_ms)
    if raw["energy_j"] is not None:
        energy = {"energy_mj": raw["energy_j"] * 1e3 / inputs, "kind": "measured", "source": raw["energy_source"],
                  "joules": raw["energy_j"], "inputs": inputs, "timed_s": raw["timed_s"],
                  "estimated_mj": estimate.energy_mj, "estimated_source": estimate.source}
    else:
        energy = estimate.to_dict()
    calibrated = None
    if calibrate_energy is not None:
        if raw["energy_j"] is None:  # the meter found before the run stopped answering
            raise CdpruneError(f"no energy meter answered during the measurement, so nothing was calibrated: "
                               f"{METERS_LOOKED_FOR}")
        what = name if method == "dense" else f"{name} ({method})"
        written = calibrate(energy_model, energy["energy_mj"], estimate.compute_mj + estimate.memory_mj, per_input_ms,
                            f"calibrated on {raw['device_name']} to {raw['energy_source']}, {what}, batch 1, "
                            f"{raw['threads']} threads")
        written.save(calibrate_energy)
        calibrated = {"path": str(calibrate_energy), "model": written.to_dict(), "measured_mj": energy["energy_mj"]}
    cpu_percent = 100.0 * raw["cpu_time_s"] / raw["timed_s"]
    return BenchResult(
        model=name, method=method, run_dir=run_dir, runtime=runtime, runtime_version=raw["runtime_version"],
        device=device, device_name=raw["device_name"], batch=batch, threads=raw["threads"],
        input_shape=list(input_shape), num_classes=num_classes, params=totals.params, flops=totals.flops,
        memory_bytes=totals.memory_bytes, p50_ms=raw["p50_ms"], p90_ms=raw["p90_ms"], p99_ms=raw["p99_ms"],
        mean_ms=raw["mean_ms"], repeats=raw["repeats"], timed_s=raw["timed_s"],
        throughput_per_s=batch * 1000.0 / raw["p50_ms"], peak_rss_bytes=raw["peak_rss_bytes"],
        rss_increase_bytes=raw["peak_rss_bytes"] - raw["rss_before_bytes"], peak_rss_scope=raw["peak_rss_scope"],
        cpu_percent=cpu_percent,
        cpu_utilisation=cpu_percent / 100.0 / raw["threads"], energy_mj=energy["energy_mj"], energy=energy,
        calibrated=calibrated)


def _check_calibration(path, batch: int, device: str, sysfs_root) -> None:
    """Refuse a calibration that cannot happen, before anything runs or is written."""
    if batch != 1:
        raise CdpruneError(f"energy calibration (--calibrate-energy) prices batch-1 inference, as the energy model "
                           f"counts it: drop --batch {batch}")
    if discover_meter(device, sysfs_root) is None:
        raise CdpruneError(f"no energy meter here to calibrate against (--calibrate-energy): {METERS_LOOKED_FOR}")
    parent = Path(path).parent
    if not parent.is_dir():
        raise CdpruneError(f"cannot write the energy model to {path}: folder {parent} does not exist; create it or "
                           f"choose another path (--calibrate-energy)")


def _check_arguments(runtime, batch, threads, min_time_s, min_repeats, device) -> None:
    if runtime not in RUNTIMES:
        raise CdpruneError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    if batch < 1:
        raise CdpruneError(f"batch must be at least 1, got {batch}")
    if threads is not None and threads < 1:
        raise CdpruneError(f"threads must be at least 1, got {threads}")
    if min_time_s < 0 or min_repeats < 1:
        raise CdpruneError("min-time must be >= 0 seconds and min-repeats >= 1")
    if runtime == "onnxruntime" and device != "cpu":
        raise CdpruneError(f"the onnxruntime runtime measures on the CPU only: use --runtime torch for {device}")
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise CdpruneError(f"unknown device '{device}': use cpu, cuda or cuda:N") from None
    if kind not in ("cpu", "cuda") or (kind == "cuda" and not torch.cuda.is_available()):
        raise CdpruneError(f"device '{device}' is not available here: use --device cpu")


def run_worker(spec: dict) -> dict:
    """Run the measuring process on `spec` and return its JSON result; a failure is one CdpruneError line."""
    env = dict(os.environ)
    # The child must import this very cdprune, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "cdprune.deploy.worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        cause = lines[-1] if lines else f"exit code {proc.returncode}" + \
            (" (killed: out of memory?)" if proc.returncode < 0 else "")
        raise CdpruneError(f"the measurement failed: {cause}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise CdpruneError("the measuring process printed no result") from None
