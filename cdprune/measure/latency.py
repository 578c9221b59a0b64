"""Inference latency: wall time of a forward pass after warm-up, as percentiles."""
from __future__ import annotations

import functools
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one forward pass in milliseconds, over `repeats` timed runs."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float  # the least disturbed run: robust to other processes, used for per-layer tables
    repeats: int
    batch: int
    threads: int
    device: str

    @property
    def throughput_per_s(self) -> float:
        """Inputs per second at the median latency."""
        return self.batch * 1000.0 / self.p50_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "throughput_per_s": self.throughput_per_s}


@functools.lru_cache(maxsize=None)
def cpu_model_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13 64-Core Processor") from /proc/cpuinfo.

    Where that file has no "model name" line (macOS, Windows, many ARM boards), falls back
    to platform.processor(), then platform.machine().
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def cpu_description() -> str:
    """The model name plus what tells CPUs of one name apart in speed: family/model and the widest SIMD.

    Virtual machines often report a bare "AMD EPYC"; a Zen 1 and a Zen 4 behind that name train
    about 4x apart, so timings are recorded with this longer description.
    """
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return cpu_model_name()
    flags = set(fields.get("flags", "").split())
    simd = next((f for f in ("avx512f", "avx2", "avx", "neon", "asimd") if f in flags), None)
    details = [f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else None,
               simd and {"avx512f": "AVX-512"}.get(simd, simd.upper()),
               "VNNI" if flags & {"avx512_vnni", "avx_vnni"} else None]
    details = [d for d in details if d]
    return f"{cpu_model_name()} ({', '.join(details)})" if details else cpu_model_name()


@contextmanager
def torch_threads(threads: int | None):
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def measure_latency(model: torch.nn.Module, input_shape, batch: int = 1, threads: int | None = None,
                    device: str = "cpu", warmup: int = 10, min_repeats: int = 30, min_time_s: float = 1.0,
                    max_repeats: int = 2000) -> LatencyStats:
    """Time `model` on a random batch until both `min_repeats` runs and `min_time_s` seconds are done.

    The model is put in eval mode and moved to `device`. On CUDA every run is
    synchronised so the time covers the kernels, not just their launch.
    """
    dev = torch.device(device)
    model = model.to(dev).eval()
    x = torch.randn(batch, *input_shape, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with torch_threads(threads) as used:
        for _ in range(warmup):
            model(x)
        sync()
        times, start = [], time.perf_counter()
        while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < min_time_s):
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append((time.perf_counter() - t0) * 1000.0)
    ms = np.array(times)
    return LatencyStats(p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
                        p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()), min_ms=float(ms.min()), repeats=len(ms),
                        batch=batch, threads=used, device=str(dev))
