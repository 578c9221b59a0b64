"""Benchmark a model on this device: latency, throughput, memory, CPU use and energy per inference.

The measurement runs in a fresh child process (`cdprune.deploy.worker`), so the figures
belong to the model and its runtime alone, not to whatever this process did before.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import models
from ..complexity import Totals, profile
from ..errors import CdpruneError
from ..measure.energy import EnergyModel, calibrate, energy_model_of, estimate_energy
from ..measure.meters import METERS_LOOKED_FOR, discover_meter
from ..measure.runtimes import get_runtime
from .budget import budget_check
from .export import (DEFAULT_CALIBRATION_IMAGES, calibration_set, check_calibration_images, export_model,
                     exported_metadata, run_output_name)
from .formats import bench_format, bench_runtimes
from .worker import run_worker
from ..pruning import PruningPlan
from ..records import Record
from ..storage import scratch_folder
from ..runs import PLAN_FILE, build_model, check_source, load_run, plan_run_name, read_metrics, trusted_reference

DEFAULT_INPUT = (3, 32, 32)


@dataclass(frozen=True)
class BenchResult(Record):
    """One benchmark. Times in ms, memory in bytes, energy in mJ per input, FLOPs in MACs per input."""

    model: str  # the model reference (a registered name or module:callable)
    method: str  # the run name (see cdprune.runs.run_name)
    run_dir: str | None
    runtime: str  # a row of measure/runtimes.py: "torch", "onnxruntime"
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
    cpu_ms_per_input: float  # process CPU time (all threads) per input: what one inference costs the device
    energy_mj: float  # per input
    energy: dict  # kind ("measured" or "estimated"), source and the details
    precision: str = "fp32"  # "int8" for a statically quantised model
    # The timing protocol (measure/timing.py): the median's 95 % CI half-width over the median, whether it
    # reached ±3 % before the time limit, and whether the figures are noisy (long tail or busy machine) and why.
    ci_rel: float | None = None
    converged: bool = False
    noisy: bool = False
    noise: str = ""
    # A pruned source is measured against the dense model of the same architecture, in the same way
    # (fresh weights, same runtime, threads, batch and precision); None for a dense source.
    dense_p50_ms: float | None = None
    dense_flops: int | None = None
    speedup: float | None = None  # dense p50 ÷ this p50
    flops_ratio: float | None = None  # dense FLOPs ÷ these FLOPs
    speedup_per_flops: float | None = None  # speedup ÷ FLOPs ratio: 1.0 when latency falls as much as FLOPs do
    task: str | None = None  # the run's task (classify, denoise, sr); None for a model without a run
    calibrated: dict | None = None  # with calibrate_energy: the energy model written and where
    file: str | None = None  # the exported file that was timed, when the caller gave one
    budget: dict | None = None  # a run whose plan had a budget: its limits checked here (deploy.budget.BudgetCheck)


def bench(source: str, plan_path: str | None = None, runtime: str = "torch", batch: int = 1, threads: int | None = None,
          input_shape=None, num_classes: int = 10, min_time_s: float = 2.0, *, min_repeats: int = 50,
          device: str = "cpu", sysfs_root: str = "/", model: str | None = None,
          model_args: dict | None = None, int8: bool = False, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
          data_dir: str | None = None, against_dense: bool = True, energy_model: EnergyModel | str | None = None,
          calibrate_energy: str | Path | None = None, allow_changed_source: bool = False,
          file: str | Path | None = None) -> BenchResult:
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
    allow_changed_source: warn instead of refusing when the run's model source changed (`runs.check_source`).
    int8: time the statically quantised model (a runtime whose bench format writes int8, onnxruntime; a run
        directory: it is calibrated on `calibration_images` of the run's training images, from `data_dir`
        if they moved). The runtime loads the file of its bench format (formats.py), exported here; a
        runtime that runs the PyTorch model itself (torch) loads the run.
    against_dense: for a pruned source, also time the dense model of the same architecture in the same
        way and report the speed-up and its ratio to the FLOPs ratio.
    file: time this exported file of the run (its runtime's bench format, at the precision its metadata
        state) instead of exporting the run's model; a run directory only, and no dense comparison.
    A run whose plan had a budget gets its limits checked on what was timed (`BenchResult.budget`).
    """
    _check_arguments(runtime, batch, threads, min_time_s, min_repeats, device)
    precision = _file_precision(file, source, int8, runtime) if file is not None else "int8" if int8 else "fp32"
    fmt = bench_format(runtime, precision)  # None: the runtime runs the PyTorch model itself
    if file is not None:
        _check_file(file, fmt, runtime, precision)
        int8, against_dense = False, False  # the file is already quantised, and the dense model has no such file
    if int8:
        calibration_images = check_calibration_images(calibration_images)
    given_energy = None if energy_model is None else energy_model_of(energy_model)
    if calibrate_energy is not None:
        _check_calibration(calibrate_energy, batch, device, sysfs_root)
    get_runtime(runtime).require()
    source_dir = Path(source)
    images = None
    if source_dir.is_dir():
        if plan_path is not None:
            raise CdpruneError(f"{source} is a run directory, which holds its own plan", "drop the plan (--plan)")
        metrics = read_metrics(source_dir)
        ref = trusted_reference(metrics.model, model, source_dir)  # before the child imports anything
        name, method, run_dir = metrics.model, metrics.method, str(source_dir)
        input_shape, num_classes = tuple(metrics.input_shape), metrics.num_classes
        model_args = metrics.settings.get("model_args") or {}
        totals = Totals(metrics.params, metrics.flops, metrics.memory_bytes)
        plan_file = source_dir / PLAN_FILE
        plan = PruningPlan.load(plan_file) if plan_file.exists() else None
        pruned = plan is not None
        # A runtime that loads files needs the trained weights exported; the torch worker loads the run itself,
        # and the energy profile here needs only the architecture.
        net = load_run(source_dir, ref, allow_changed_source=allow_changed_source)[0] \
            if fmt is not None and file is None else build_model(ref, num_classes, input_shape, plan, model_args)
        check_source(metrics, net, source_dir, allow_changed_source)
        if file is not None:
            _check_file_of_run(file, plan, source_dir)
        task, output_name = metrics.task, run_output_name(metrics)
        if int8:
            images = calibration_set(source_dir, calibration_images, data_dir)
    else:
        if not models.is_registered(source) and ":" not in source:
            raise CdpruneError(f"'{source}' is neither a run directory nor a registered model "
                               f"({', '.join(models.names())}) nor a reference module:callable")
        if int8:
            raise CdpruneError("an int8 model is calibrated on a run's training images", "give a run directory "
                               "('cdprune train') instead of a model")
        input_shape = tuple(input_shape or DEFAULT_INPUT)
        plan = PruningPlan.load(plan_path) if plan_path else None
        net = build_model(source, num_classes, input_shape, plan, model_args)  # checks that the plan fits
        totals = profile(net, input_shape).totals
        ref, pruned = source, plan is not None
        name, method, run_dir = source, plan_run_name(plan), None
        task, output_name = None, "logits"  # a bare model: its task is unknown; the name only labels a temporary file
    energy_model = given_energy or (plan.energy_model if plan is not None else None) or energy_model_of(None)
    layers = profile(net, input_shape, energy_model)  # the estimate is the sum of these layers

    # Absolute paths, so the child does not depend on sharing this process's working directory.
    spec = {"runtime": runtime, "run_dir": run_dir and str(Path(run_dir).resolve()), "model": ref,
            "model_args": model_args or {}, "allow_changed_source": allow_changed_source,
            "plan_path": str(Path(plan_path).resolve()) if plan_path else None,
            "num_classes": num_classes, "input_shape": list(input_shape), "model_file": None, "batch": batch,
            "threads": threads, "device": device, "min_time_s": min_time_s, "min_repeats": min_repeats,
            "sysfs_root": str(sysfs_root)}
    dense_raw = dense_totals = None
    with scratch_folder("cdprune-bench-") as tmp:
        if file is not None:
            spec["model_file"] = str(Path(file).resolve())
        elif fmt is not None:
            spec["model_file"] = _model_file(fmt, net, input_shape, Path(tmp) / "model", images, output_name, batch)
        del net  # the child loads its own copy
        raw = run_worker(spec)
        if pruned and against_dense:
            dense = build_model(ref, num_classes, input_shape, None, model_args)
            dense_totals = profile(dense, input_shape).totals
            dense_spec = {**spec, "run_dir": None, "plan_path": None}
            if fmt is not None:
                dense_spec["model_file"] = _model_file(fmt, dense, input_shape, Path(tmp) / "dense", images,
                                                       output_name, batch)
            del dense
            dense_raw = run_worker(dense_spec)

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
    against = {}
    if dense_raw is not None:
        speedup, flops_ratio = dense_raw["p50_ms"] / raw["p50_ms"], dense_totals.flops / totals.flops
        against = {"dense_p50_ms": dense_raw["p50_ms"], "dense_flops": dense_totals.flops, "speedup": speedup,
                   "flops_ratio": flops_ratio, "speedup_per_flops": speedup / flops_ratio}
    result = BenchResult(
        model=name, method=method, run_dir=run_dir, runtime=runtime, runtime_version=raw["runtime_version"],
        device=device, device_name=raw["device_name"], batch=batch, threads=raw["threads"],
        input_shape=list(input_shape), num_classes=num_classes, params=totals.params, flops=totals.flops,
        memory_bytes=totals.memory_bytes, p50_ms=raw["p50_ms"], p90_ms=raw["p90_ms"], p99_ms=raw["p99_ms"],
        mean_ms=raw["mean_ms"], repeats=raw["repeats"], timed_s=raw["timed_s"], ci_rel=raw["ci_rel"],
        converged=raw["converged"], noisy=raw["noisy"], noise=raw["noise"],
        throughput_per_s=batch * 1000.0 / raw["p50_ms"], peak_rss_bytes=raw["peak_rss_bytes"],
        rss_increase_bytes=raw["peak_rss_bytes"] - raw["rss_before_bytes"], peak_rss_scope=raw["peak_rss_scope"],
        cpu_percent=cpu_percent,
        cpu_utilisation=cpu_percent / 100.0 / raw["threads"], cpu_ms_per_input=1000.0 * raw["cpu_time_s"] / inputs,
        energy_mj=energy["energy_mj"], energy=energy, precision=precision, task=task, calibrated=calibrated,
        file=None if file is None else str(file), **against)
    checked = budget_check(plan, result, result.file)
    return result if checked is None else replace(result, budget=checked.to_dict())


def _file_precision(file, source: str, int8: bool, runtime: str) -> str:
    """The precision an exported file states; refuses a file without a run, and --int8 beside a file."""
    if not Path(source).is_dir():
        raise CdpruneError(f"an exported file (--file) is timed for its run: give the run directory it was exported "
                           f"from instead of '{source}'")
    if int8:
        raise CdpruneError("an exported file states its own precision", "drop --int8")
    if not Path(file).is_file():
        raise CdpruneError(f"no exported file {file}", "export one with 'cdprune export RUN' or fix the path (--file)")
    return str(exported_metadata(file).get("precision", "fp32"))


def _check_file_of_run(file, plan, run_dir: Path) -> None:
    """Refuse a file whose metadata name another plan than the run's (files without metadata are taken as given)."""
    metadata = exported_metadata(file)
    digest = plan.to_dict()["digest"] if plan is not None else None
    if "plan_digest" in metadata and metadata["plan_digest"] != digest:
        raise CdpruneError(f"{file} was exported from another model than the run {run_dir} (its plan differs)",
                           f"export the run with 'cdprune export {run_dir}' and time that file (--file)")


def _check_file(file, fmt, runtime: str, precision: str) -> None:
    if fmt is None:
        raise CdpruneError(f"the {runtime} runtime runs the PyTorch model, not an exported file", "choose the "
                           "file's runtime (--runtime), e.g. onnxruntime for .onnx")
    if not str(file).endswith(fmt.suffix):
        raise CdpruneError(f"{file} is not a {fmt.title} file ({fmt.suffix}), which {runtime} benchmarks",
                           "give one (--file) or choose its runtime (--runtime)")


def _model_file(fmt, net, input_shape, stem: Path, images, output: str, batch: int) -> str:
    """`net` exported as `fmt` next to `stem`, for the timed batch size; quantised to int8 (calibrated on `images`)
    when images are given."""
    precision = "fp32" if images is None else "int8"
    path = stem.with_name(stem.name + fmt.file_name(precision)[len("model"):])
    return str(export_model(net, input_shape, fmt.name, path, output=output, precision=precision, images=images,
                            batch=batch))


def _check_calibration(path, batch: int, device: str, sysfs_root) -> None:
    """Refuse a calibration that cannot happen, before anything runs or is written."""
    if batch != 1:
        raise CdpruneError("energy calibration (--calibrate-energy) prices batch-1 inference, as the energy model "
                           "counts it", f"drop --batch {batch}")
    if discover_meter(device, sysfs_root) is None:
        raise CdpruneError(f"no energy meter here to calibrate against (--calibrate-energy): {METERS_LOOKED_FOR}")
    parent = Path(path).parent
    if not parent.is_dir():
        raise CdpruneError(f"cannot write the energy model to {path}", f"folder {parent} does not exist; create it or "
                           f"choose another path (--calibrate-energy)")


def _check_arguments(runtime, batch, threads, min_time_s, min_repeats, device) -> None:
    if runtime not in bench_runtimes():
        raise CdpruneError(f"unknown runtime '{runtime}'", f"choose one of {', '.join(bench_runtimes())}")
    if batch < 1:
        raise CdpruneError(f"batch must be at least 1, got {batch}")
    if threads is not None and threads < 1:
        raise CdpruneError(f"threads must be at least 1, got {threads}")
    if min_time_s < 0 or min_repeats < 1:
        raise CdpruneError("min-time must be >= 0 seconds and min-repeats >= 1")
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise CdpruneError(f"unknown device '{device}'", "use cpu, cuda or cuda:N") from None
    devices = get_runtime(runtime).devices
    others = [name for name in bench_runtimes() if kind in get_runtime(name).devices]
    if kind not in devices and others:
        where = " or ".join({"cpu": "the CPU"}.get(d, d.upper()) for d in devices)
        raise CdpruneError(f"the {runtime} runtime measures on {where} only", f"use --runtime {' or '.join(others)} "
                           f"for {device}")
    if kind not in ("cpu", "cuda") or (kind == "cuda" and not torch.cuda.is_available()):
        raise CdpruneError(f"device '{device}' is not available here", "use --device cpu")


FILE_MIN_REPEATS = 20  # as a budget run's shipped file is timed (experiment.check_shipped)


def file_timing(data: bytes, input_shape, threads: int, min_time_s: float) -> dict:
    """An ONNX model (bytes), batch 1, timed as bench times a shipped file: in a fresh process, in ONNX Runtime at
    `threads`, by the timing protocol, for `min_time_s` and at least FILE_MIN_REPEATS runs. The worker's result
    (p50_ms, p90_ms, noisy, noise, …; see deploy/worker.py)."""
    with scratch_folder("cdprune-fit-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        return run_worker({"runtime": "onnxruntime", "run_dir": None, "model": None, "model_args": {},
                           "plan_path": None, "num_classes": None, "input_shape": [int(s) for s in input_shape],
                           "model_file": str(path), "batch": 1, "threads": threads, "device": "cpu",
                           "min_time_s": min_time_s, "min_repeats": FILE_MIN_REPEATS, "sysfs_root": "/"})


def file_latency(data: bytes, input_shape, threads: int, min_time_s: float) -> tuple[float, float]:
    """(p50, p90) ms of `file_timing`: the timer `fit_plan` uses in `run`, `compare` and `sweep`, so that a plan is
    fitted by the figure it is checked by after training."""
    raw = file_timing(data, input_shape, threads, min_time_s)
    return raw["p50_ms"], raw["p90_ms"]
