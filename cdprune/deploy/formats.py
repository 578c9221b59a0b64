"""The export formats: one row each (docs/design.md, §6.3), in the manner of Ultralytics' `export_formats()`.

A row names the format's file suffix, its exporter, the runtime that loads its files
(`cdprune.measure.runtimes`), the precisions it writes, and whether `bench` and `eval` work with
it. `export`, `bench`, `eval` and the CLI's choices read the rows, and their refusals of an
unsupported combination (int8 TorchScript, bench --int8 in torch) come from here. A new format is one
`register_format` call plus its exporter; `export.py` registers ONNX, ORT and TorchScript, `edge.py`
ExecuTorch and LiteRT.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import registry
from ..errors import CdpruneError
from ..measure.latency import require_module
from ..measure.runtimes import RUNTIMES, get_runtime

PRECISIONS = ("fp32", "int8")  # what export, bench and eval can ask for (int8: --int8)


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    export(model, input_shape, *, precision, metadata, output, images) -> bytes: the file's content for
    a CPU copy of `model` in eval mode, for inputs of shape (C, H, W); `metadata` are the entries the
    file should carry where the format has a place for them, `output` the output's name, `images`
    calibration inputs (float32 N×C×H×W) for a precision below fp32, else None. A row with
    `takes_batch` also gets `batch`: the batch axis's fixed size, or None for a dynamic axis (rows with
    `dynamic_batch` only). `export_model` writes the bytes atomically, and beside them, for a format
    with no place for metadata, the sidecar `<file>.json`.
    """

    name: str  # the --format choice
    title: str  # "ONNX", in messages
    suffix: str  # ".onnx"; the default file in a run directory is model<suffix> (model.int8<suffix> for int8)
    export: Callable[..., bytes]
    runtime: str | None = None  # the runtime that loads the files (measure/runtimes.py); None: none in cdprune
    precisions: tuple[str, ...] = ("fp32",)
    bench: bool = False  # `bench --runtime <runtime>` times a file of this format
    eval: bool = False  # `eval` tests a file of this format on a run's test set, in its runtime
    # (path, output name) -> ExportResult fields a file of this format adds (ONNX: opset, input, output, metadata)
    describe: Callable[[Path, str], dict] | None = None
    read_precision: Callable[[Path], str] | None = None  # the precision a file holds, for eval (default fp32)
    packages: tuple[str, ...] = ()  # what the exporter imports besides its runtime's packages
    extra: str = "deploy"  # the cdprune extra that installs them
    metadata_in_file: bool = True  # False: the metadata travels in the JSON sidecar <file>.json
    takes_batch: bool = False  # the exporter takes `batch` (a fixed size, or None for a dynamic axis)
    dynamic_batch: bool = False  # it can write a dynamic batch axis (export --dynamic-batch)

    def file_name(self, precision: str = "fp32") -> str:
        """The file's default name in a run directory: model.onnx, model.int8.onnx, model.pt."""
        return "model" + ("" if precision == "fp32" else f".{precision}") + self.suffix

    @property
    def latency_table(self) -> bool:
        """Whether its runtime times per-layer latency tables (mode la, latency budgets)."""
        return self.runtime is not None and RUNTIMES[self.runtime].time_module is not None

    def require(self) -> None:
        """Import what exporting and loading files of this format needs, or say in one line which extra brings it."""
        for package in self.packages:
            require_module(package, self.extra)
        if self.runtime is not None:
            get_runtime(self.runtime).require()

    def check_precision(self, precision: str) -> None:
        """Refuse, in one line, a precision this format does not write, naming the formats that do."""
        if precision in self.precisions:
            return
        able = [f for f in FORMATS.values() if precision in f.precisions]
        if not able:
            raise CdpruneError(f"no export format writes {precision} models")
        flag = f" with --{precision}" if precision != "fp32" else ""
        raise CdpruneError(f"{precision} models are written as {either(f.title for f in able)}", "use --format "
                           f"{either(f.name for f in able)}{flag}")


FORMATS: dict[str, ExportFormat] = {}


def either(names) -> str:
    """'a', 'a or b', 'a, b or c'."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Add an export format to the table; registering a name again replaces it, with a warning."""
    if fmt.runtime is not None:
        runtime = get_runtime(fmt.runtime)
        if (fmt.bench or fmt.eval or set(fmt.precisions) - {"fp32"}) and runtime.load is None:
            raise CdpruneError(f"format '{fmt.name}'", f"runtime '{fmt.runtime}' loads no files, so it cannot bench, "
                               f"evaluate or compare them")
    elif fmt.bench or fmt.eval:
        raise CdpruneError(f"format '{fmt.name}' names no runtime, so bench and eval cannot load its files")
    if fmt.dynamic_batch and not fmt.takes_batch:
        raise CdpruneError(f"format '{fmt.name}' offers a dynamic batch axis, which needs an exporter that takes "
                           "`batch`", "set takes_batch=True")
    unknown = set(fmt.precisions) - set(PRECISIONS)
    if unknown:
        raise CdpruneError(f"format '{fmt.name}'", f"unknown precision {sorted(unknown)[0]}; choose from "
                           f"{', '.join(PRECISIONS)}")
    return registry.add(FORMATS, fmt.name, fmt, "export format")


def get_format(name: str) -> ExportFormat:
    return registry.get(FORMATS, name, "export format", option="format")


def export_formats() -> list[dict]:
    """The table, one dict per format: name, title, suffix, runtime, precisions, bench, eval, latency_table."""
    return [{"name": f.name, "title": f.title, "suffix": f.suffix, "runtime": f.runtime,
             "precisions": list(f.precisions), "bench": f.bench, "eval": f.eval, "latency_table": f.latency_table}
            for f in FORMATS.values()]


def bench_runtimes() -> list[str]:
    """The runtimes bench measures in: those that run the PyTorch model itself, and those of a bench format."""
    return [name for name, runtime in RUNTIMES.items()
            if runtime.load is None or any(f.bench and f.runtime == name for f in FORMATS.values())]


def bench_format(runtime: str, precision: str = "fp32") -> ExportFormat | None:
    """The format whose files bench times in `runtime` at `precision`; None for a runtime that runs the model
    itself. A combination no row supports is one CdpruneError naming the runtimes that do."""
    if get_runtime(runtime).load is None and precision == "fp32":
        return None
    for fmt in FORMATS.values():
        if fmt.bench and fmt.runtime == runtime and precision in fmt.precisions:
            return fmt
    able = [RUNTIMES[f.runtime] for f in FORMATS.values() if f.bench and precision in f.precisions]
    if precision != "fp32" and able:
        raise CdpruneError(f"{precision} models run in {either(r.title for r in able)}", "add --runtime "
                           f"{either(r.name for r in able)} to --{precision}")
    raise CdpruneError(f"bench cannot time {precision} models in runtime '{runtime}'", "choose one of "
                       f"{', '.join(bench_runtimes())} (--runtime)")


def eval_format(path: str | Path) -> ExportFormat:
    """The format of the file `path` by its suffix, among those `eval` tests; anything else is one CdpruneError."""
    name = Path(path).name
    able = [f for f in FORMATS.values() if f.eval]
    for fmt in sorted(able, key=lambda f: -len(f.suffix)):  # the longest suffix that fits: .int8.onnx before .onnx
        if name.endswith(fmt.suffix):
            return fmt
    kinds = either(f"{f.title} ({f.suffix})" for f in able)
    raise CdpruneError(f"{path} is not a file eval can test", f"it tests {kinds} files written by 'cdprune export'")
