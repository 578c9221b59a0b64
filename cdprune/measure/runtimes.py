"""The runtimes a model can run in on the device: one row each (docs/design.md, §5.2-5.3).

A row says how to name the runtime's version, how to load an exported file and run it at N
threads, and how to time one layer for a per-layer latency table. `bench`, `eval`, the int8
comparison of `export` and the latency tables read these rows; the export formats that produce
the files (`cdprune.deploy.formats`) name their runtime by its row's name. A new runtime is one
`register_runtime` call with its adapters.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import registry
from .latency import (LatencyStats, onnx_bytes, ort_session, quiet_native_stderr, require_module, step_latency)
from .quantize import int8_onnx_bytes
from .timing import fastest_ms


@dataclass(frozen=True)
class LoadedModel:
    """An exported file loaded in a runtime: `run(batch)` returns the first output for a float32 N×C×H×W batch."""

    run: Callable[[np.ndarray], np.ndarray]
    input_shape: list  # without the batch axis, as the file declares it
    output_shape: list  # without the batch axis; a dimension the file leaves open is text or None


@dataclass(frozen=True)
class Runtime:
    """One runtime. `load` is None for a runtime that runs the PyTorch model itself, not a file."""

    name: str  # the --runtime choice
    title: str  # "ONNX Runtime", in messages
    packages: tuple[str, ...]  # what its adapters import; the first names its version
    extra: str = "deploy"  # the cdprune extra that installs the packages: pip install 'cdprune[<extra>]'
    devices: tuple[str, ...] = ("cpu",)  # torch.device types it measures on
    # (file path or bytes, intra-op threads) -> LoadedModel
    load: Callable[[str | bytes, int], LoadedModel] | None = None
    # (module, input_shape, threads, precision) -> a function that runs the module once on a fixed random
    # batch-1 input, as this runtime runs it in `precision`; None: the runtime times no latency tables
    module_step: Callable[[torch.nn.Module, tuple, int, str], Callable[[], object]] | None = None
    # A latency table times each layer with the BatchNorm and activation after it, as the runtime fuses them.
    layers_as_deployed: bool = False
    table_precisions: tuple[str, ...] = ("fp32",)  # the precisions its latency tables time

    @property
    def time_module(self) -> Callable[..., float] | None:
        """(module, input_shape, threads, warmup, repeats, min_time_s, precision="fp32") -> the fastest batch-1 run
        in ms; None where the runtime times no latency tables."""
        if self.module_step is None:
            return None

        def time_module(module, input_shape, threads, warmup, repeats, min_time_s, precision="fp32") -> float:
            return fastest_ms(self.module_step(module, input_shape, threads, precision), warmup, repeats, min_time_s)

        return time_module

    def require(self) -> None:
        """Import every package the runtime needs, or say in one line how to install the missing one."""
        for package in self.packages:
            require_module(package, self.extra)

    def version(self) -> str:
        """'torch 2.13.0', 'onnxruntime 1.20.1': what timings in this runtime depend on besides the device."""
        self.require()
        package = self.packages[0]
        version = getattr(require_module(package, self.extra), "__version__", None)
        return f"{package} {version or importlib.metadata.version(package)}"

    def latency(self, model_file: str | bytes, input_shape, threads: int = 1, min_time_s: float = 1.0) -> LatencyStats:
        """Batch-1 latency of a file in this runtime, in this process (10 warm-up runs, at least 20 timed)."""
        loaded = self.load(model_file, threads)
        x = np.random.default_rng(0).standard_normal((1, *input_shape), dtype=np.float32)
        return step_latency(lambda: loaded.run(x), batch=1, threads=threads, min_time_s=min_time_s)


RUNTIMES: dict[str, Runtime] = {}


def register_runtime(runtime: Runtime) -> Runtime:
    """Add a runtime to the table; registering a name again replaces it, with a warning."""
    return registry.add(RUNTIMES, runtime.name, runtime, "runtime")


def get_runtime(name: str) -> Runtime:
    return registry.get(RUNTIMES, name, "runtime", option="runtime")


def table_runtimes() -> list[str]:
    """The runtimes that time per-layer latency tables (mode la, latency budgets, `cdprune latency-table`)."""
    return [name for name, runtime in RUNTIMES.items() if runtime.time_module is not None]


def in_fixed_batches(run: Callable[[np.ndarray], np.ndarray], batch) -> Callable[[np.ndarray], np.ndarray]:
    """`run` for a file whose batch axis is fixed at `batch`: any batch is cut into runs of that size (the last one
    padded with zeros, its padding dropped from the output). A dynamic axis (text or None) runs batches whole."""
    if not isinstance(batch, int) or batch < 1:
        return run

    def run_any(x: np.ndarray) -> np.ndarray:
        if len(x) == batch:
            return run(x)
        outputs = []
        for start in range(0, len(x), batch):
            part = x[start:start + batch]
            short = batch - len(part)
            if short:
                part = np.concatenate([part, np.zeros((short, *part.shape[1:]), dtype=part.dtype)])
            outputs.append(run(np.ascontiguousarray(part))[:batch - short])
        return np.concatenate(outputs)

    return run_any


# ---- torch: the PyTorch model itself, eager ----------------------------------------------------

def _torch_module_step(module, input_shape, threads, precision):
    # The caller holds torch's thread count at `threads` for the whole table; fp32 is its only precision.
    # The modules timed are copies made for timing: without gradients they build no autograd graph, and no
    # per-call no_grad context weighs on layers that take microseconds.
    module = module.eval().requires_grad_(False)
    x = torch.randn(1, *input_shape)
    return lambda: module(x)


# ---- onnxruntime: ONNX files on the CPU -----------------------------------------------------------

def _onnxruntime_load(model_file: str | bytes, threads: int) -> LoadedModel:
    session = ort_session(model_file, threads)  # ONNX files and ORT-format (.ort) files alike
    (given,), (output,) = session.get_inputs(), session.get_outputs()
    name = given.name
    return LoadedModel(run=in_fixed_batches(lambda x: session.run(None, {name: x})[0], given.shape[0]),
                       input_shape=list(given.shape[1:]), output_shape=list(output.shape[1:]))


def deployed_onnx(module, input_shape, precision: str = "fp32") -> bytes:
    """`module` as ONNX Runtime runs it in a latency table: batch 1 fixed, quantised like `export --int8` for
    int8 (measure/quantize.py)."""
    fp32 = onnx_bytes(module, input_shape, dynamic_batch=False)
    return fp32 if precision == "fp32" else int8_onnx_bytes(fp32, input_shape)


def _onnxruntime_module_step(module, input_shape, threads, precision):
    loaded = _onnxruntime_load(deployed_onnx(module, input_shape, precision), threads)
    x = np.random.default_rng(0).standard_normal((1, *input_shape), dtype=np.float32)
    return lambda: loaded.run(x)


register_runtime(Runtime("torch", "PyTorch", ("torch",), devices=("cpu", "cuda"), module_step=_torch_module_step))
register_runtime(Runtime("onnxruntime", "ONNX Runtime", ("onnxruntime", "onnx"), load=_onnxruntime_load,
                         module_step=_onnxruntime_module_step, layers_as_deployed=True,
                         table_precisions=("fp32", "int8")))


# ---- executorch: ExecuTorch programs (.pte), XNNPACK-delegated -----------------------------------

def _executorch_load(model_file: str | bytes, threads: int) -> LoadedModel:
    require_module("executorch", "executorch")
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime as ExecuTorchRuntime

    with quiet_native_stderr():
        # One thread pool serves every program of the process (XNNPACK's); the newest load sets its size.
        portable_lib._unsafe_reset_threadpool(threads)
        source = model_file if isinstance(model_file, bytes) else Path(model_file)
        program = ExecuTorchRuntime.get().load_program(source)
        method = program.load_method("forward")
    meta = method.metadata
    given, output = list(meta.input_tensor_meta(0).sizes()), list(meta.output_tensor_meta(0).sizes())

    def run(x: np.ndarray, _program=program) -> np.ndarray:  # _program: the method's memory lives as long as `run`
        return method.execute([torch.from_numpy(x)])[0].numpy()

    return LoadedModel(run=in_fixed_batches(run, given[0]), input_shape=given[1:], output_shape=output[1:])


# ---- litert: LiteRT (TensorFlow Lite) flatbuffers (.tflite), XNNPACK delegate ------------------------

def _litert_load(model_file: str | bytes, threads: int) -> LoadedModel:
    require_module("ai_edge_litert", "litert")
    from ai_edge_litert.interpreter import Interpreter

    source = {"model_content": model_file} if isinstance(model_file, bytes) else {"model_path": str(model_file)}
    with quiet_native_stderr():  # the default op resolver applies the XNNPACK delegate, and says so
        interpreter = Interpreter(**source, num_threads=threads)
        interpreter.allocate_tensors()
    (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    to_input, from_output = _quantizer(given), _dequantizer(output)

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(given["index"], to_input(x))
        interpreter.invoke()
        return from_output(interpreter.get_tensor(output["index"]))

    shape, out_shape = [int(d) for d in given["shape"]], [int(d) for d in output["shape"]]
    return LoadedModel(run=in_fixed_batches(run, shape[0]), input_shape=shape[1:], output_shape=out_shape[1:])


def _quantizer(detail: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Float inputs as a tensor of `detail` takes them: as they are, or quantised with its scale and zero point
    (a fully int8 LiteRT model takes int8 inputs)."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return lambda x: x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return lambda x: np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantizer(detail: dict) -> Callable[[np.ndarray], np.ndarray]:
    if np.dtype(detail["dtype"]) == np.float32:
        return lambda y: y
    scale, zero = detail["quantization"]
    return lambda y: (y.astype(np.float32) - zero) * np.float32(scale)


register_runtime(Runtime("executorch", "ExecuTorch", ("executorch",), extra="executorch", load=_executorch_load))
register_runtime(Runtime("litert", "LiteRT", ("ai_edge_litert",), extra="litert", load=_litert_load))
