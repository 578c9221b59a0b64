"""The measuring process of `cdprune bench`: python -m cdprune.deploy.worker SPEC_JSON.

It runs in a fresh interpreter so that the parent's memory, threads and caches do not
leak into the figures. It records its RSS, loads the model (a torch model from the
registry or a run directory, or an exported file through its runtime's `load` in
measure/runtimes.py), warms it up, times a loop, and prints one JSON object on stdout:

    p50_ms, p90_ms, p99_ms, mean_ms   latency of one batch, ms
    repeats, timed_s                  timed runs and the loop's wall time, s
    ci_rel, converged                 the median's 95 % CI half-width over the median, and whether it
                                      reached ±3 % (measure/timing.py)
    noisy, noise                      a long tail (p90 > 1.5 p50) or a busy machine, and what was measured
    cpu_time_s                        process CPU time during the loop (all threads), s
    threads                           intra-op threads used
    rss_before_bytes                  RSS before the model was loaded
    peak_rss_bytes, peak_rss_scope    peak RSS during warm-up and timing ("inference"; Linux), or
                                      over the whole process where the peak cannot be reset ("process")
    energy_j, energy_source           energy of the loop from a device meter, or null
    runtime_version, device_name

A failure ends it with one line on stderr and a non-zero exit code. `run_worker` starts it
from the parent process.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from ..errors import CdpruneError
from ..measure.meters import discover_meter
from ..measure.runtimes import get_runtime
from ..measure.timing import time_calls

WARMUP_RUNS = 10
WARMUP_FRACTION = 0.25  # of min_time_s, so clocks and caches settle before timing
# While the median's interval is wider than ±3 %, timing goes on up to this many times min_time_s.
BENCH_TIME_LIMIT = 4


def peak_rss_bytes() -> int:
    """The process's peak resident set size in bytes."""
    # VmHWM belongs to this process image only; getrusage's ru_maxrss would carry over the
    # parent's peak across fork + exec on Linux.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    info = psutil.Process().memory_info()
    if hasattr(info, "peak_wset"):  # Windows
        return int(info.peak_wset)
    import resource  # macOS: ru_maxrss in bytes
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def device_name(device: str) -> str:
    """A readable name for the device that runs the model."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    from ..measure.latency import cpu_model_name  # one definition, shared with the latency table's cache key

    return cpu_model_name()


def torch_step(spec: dict):
    """A function that runs one forward pass of the torch model on a random batch."""
    from ..pruning import PruningPlan
    from ..runs import build_model, load_run

    # The parent checked the reference: it is a registered name or one the user gave on this call.
    if spec["run_dir"]:
        model, _ = load_run(spec["run_dir"], spec["model"], allow_changed_source=spec.get("allow_changed_source", False))
    else:
        plan = PruningPlan.load(spec["plan_path"]) if spec["plan_path"] else None
        model = build_model(spec["model"], spec["num_classes"], tuple(spec["input_shape"]), plan, spec["model_args"])
    device = torch.device(spec["device"])
    model = model.to(device).eval()
    x = torch.randn(spec["batch"], *spec["input_shape"], device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        with torch.inference_mode():
            model(x)
        sync()  # on CUDA, time the kernels, not their launch

    return step, f"torch {torch.__version__}"


def file_step(spec: dict, threads: int):
    """A function that runs one inference of the exported file in its runtime, on a random batch."""
    runtime = get_runtime(spec["runtime"])
    loaded = runtime.load(spec["model_file"], threads)
    x = np.random.default_rng(0).standard_normal((spec["batch"], *spec["input_shape"]), dtype=np.float32)
    return (lambda: loaded.run(x)), runtime.version()


def timed_loop(step, min_repeats: int, min_time_s: float) -> tuple[dict, float]:
    """Time `step` by the protocol of measure/timing.py: at least `min_repeats` runs and `min_time_s` seconds, then
    until the median's 95 % interval is within ±3 %, for at most BENCH_TIME_LIMIT times `min_time_s`.

    Returns the timing result (p50, p90, n, ci_rel, converged, noisy, timed_s, …) and the process CPU time (s).
    """
    cpu0 = time.process_time()
    result = time_calls(step, warmup=0, min_repeats=min_repeats, min_time_s=min_time_s,
                        max_time_s=BENCH_TIME_LIMIT * min_time_s)
    return result, time.process_time() - cpu0


def measure(spec: dict) -> dict:
    """Load, warm up and time the model described by `spec` (see cdprune.deploy.bench)."""
    rss_before = psutil.Process().memory_info().rss
    threads = spec["threads"] or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if spec["model_file"]:
        step, version = file_step(spec, threads)
    else:
        step, version = torch_step(spec)
    # Pruning a model builds the dense one first; that transient is construction, not inference.
    gc.collect()
    peak_scope = "inference" if reset_peak_rss() else "process"

    warmup_s, start, runs = WARMUP_FRACTION * spec["min_time_s"], time.perf_counter(), 0
    while runs < WARMUP_RUNS or time.perf_counter() - start < warmup_s:
        step()
        runs += 1

    meter = discover_meter(spec["device"], spec.get("sysfs_root", "/"))
    if meter:
        meter.start()
    timing, cpu_s = timed_loop(step, spec["min_repeats"], spec["min_time_s"])
    energy_j = meter.stop() if meter else None

    return {**{k: timing[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "ci_rel", "converged", "noisy",
                                      "noise", "timed_s")},
            "repeats": timing["n"], "cpu_time_s": cpu_s, "threads": threads, "rss_before_bytes": rss_before,
            "peak_rss_bytes": peak_rss_bytes(), "peak_rss_scope": peak_scope, "energy_j": energy_j,
            "energy_source": meter.source if meter else None, "runtime_version": version,
            "device_name": device_name(spec["device"])}


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


def main(argv: list[str]) -> int:
    try:
        result = measure(json.loads(argv[0]))
    except CdpruneError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:  # the parent shows the last stderr line: make it the cause, in one line
        message = " ".join(str(exc).split())[:300]
        print(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
