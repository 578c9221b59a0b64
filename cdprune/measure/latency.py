"""Inference latency: wall time of a forward pass after warm-up, as percentiles."""
from __future__ import annotations

import functools
import importlib
import io
import os
import platform
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CdpruneError
from .timing import fastest_ms, time_calls  # noqa: F401 (fastest_ms's home is timing.py; importers here keep working)


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
    ci_rel: float | None = None  # the median's 95 % interval half-width over the median (measure/timing.py)
    noisy: bool = False  # p90/p50 > 1.5 or the machine was loaded: the figure may not hold on a quiet machine
    noise: str = ""  # what decided `noisy`

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


ONNX_OPSET = 17


def require_module(module: str, extra: str = "deploy"):
    """Import `module` (onnx, onnxruntime, executorch, ...) or say, in one line, how to install it: the cdprune
    extra that brings it."""
    try:
        with quiet_native_stderr():  # torchao and LiteRT print notes about optional kernels as they load
            return importlib.import_module(module)
    except ImportError:
        raise CdpruneError(f"{module} is not installed", f"pip install 'cdprune[{extra}]'") from None


@contextmanager
def quiet_native_stderr():
    """Keep what native libraries print on file descriptor 2 (ExecuTorch's and LiteRT's start-up notes) off the
    terminal; Python errors still surface as exceptions."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def onnx_bytes(model: torch.nn.Module, input_shape, input_name: str = "input", output_name: str = "output",
               dynamic_batch: bool = True, batch: int = 1) -> bytes:
    """`model` (on the CPU, in eval mode) as an ONNX file at opset ONNX_OPSET, for inputs (N, *input_shape): N
    dynamic, or fixed at `batch`."""
    require_module("onnx")
    example = torch.randn(batch, *input_shape)
    buffer = io.BytesIO()
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    # The TorchScript-based exporter is deprecated in favour of torch.export, but it is the one that
    # gives a plain ONNX file quickly on every torch >= 2.3.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[input_name], output_names=[output_name], dynamic_axes=axes)
    return buffer.getvalue()


def ort_session(model: bytes | str, threads: int):
    """An ONNX Runtime CPU session with `threads` intra-op threads; the graph runs op after op."""
    ort = require_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # sequential graph: intra-op threads are the only parallelism
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


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
                    device: str = "cpu", warmup: int = 10, min_repeats: int = 30, min_time_s: float = 1.0) -> LatencyStats:
    """Time `model` on a random batch by the timing protocol (measure/timing.py): at least `min_repeats` runs
    and `min_time_s` seconds, then until the median's interval is within ±3 % or 4 × min_time_s has passed.

    The model is put in eval mode and moved to `device`. On CUDA every run is
    synchronised so the time covers the kernels, not just their launch.
    """
    dev = torch.device(device)
    model = model.to(dev).eval()
    x = torch.randn(batch, *input_shape, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        model(x)
        sync()

    with torch_threads(threads) as used:
        return step_latency(step, batch, used, warmup, min_repeats, min_time_s, device=str(dev))


def onnx_latency(model: bytes | str, input_shape, threads: int = 1, batch: int = 1, warmup: int = 10,
                 min_repeats: int = 20, min_time_s: float = 1.0) -> LatencyStats:
    """Time an ONNX model in ONNX Runtime on the CPU, like `measure_latency` times a torch model."""
    session = ort_session(model, threads)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((batch, *input_shape),
                                                                                   dtype=np.float32)}
    return step_latency(lambda: session.run(None, feed), batch, threads, warmup, min_repeats, min_time_s)


def step_latency(step, batch: int = 1, threads: int = 1, warmup: int = 10, min_repeats: int = 20,
                 min_time_s: float = 1.0, device: str = "cpu") -> LatencyStats:
    """Time calls of `step` (one inference of a batch of `batch`) by the timing protocol (measure/timing.py),
    for at most 4 × min_time_s (at least 1 s) while the median has not settled."""
    timed = time_calls(step, warmup=warmup, min_repeats=min_repeats, min_time_s=min_time_s,
                       max_time_s=max(4.0 * min_time_s, 1.0))
    return LatencyStats(p50_ms=timed["p50_ms"], p90_ms=timed["p90_ms"], p99_ms=timed["p99_ms"],
                        mean_ms=timed["mean_ms"], min_ms=timed["min_ms"], repeats=timed["n"], batch=batch,
                        threads=threads, device=device, ci_rel=timed["ci_rel"], noisy=timed["noisy"],
                        noise=timed["noise"])
