"""Export a trained (pruned or dense) model to a deployable file: ONNX (fp32 or int8) or TorchScript.

ONNX files use opset 17, one input named `input` (N×C×H×W float32) and one output named after
the task (`logits` for classify, `image` for the restoration tasks: `output_name`), with a dynamic batch axis N. Their
metadata (`metadata_props`, every value JSON text) carries what the device needs to feed the
model: input shape, layout and channel order, normalisation, class names, and where the model
comes from (model reference, plan digest, cdprune version); see ONNX_METADATA_KEYS.

int8 files are statically quantised by ONNX Runtime, calibrated on training images of the run.
TorchScript files are a CPU trace in eval mode, for `torch.jit.load` on the device. Files are
written atomically, so a reader never sees half of one.

Both formats are rows of the export-format table (`formats.py`), registered at the end of this
file next to their exporters; `export_model` and `export_run` work from the row.
"""
from __future__ import annotations

import copy
import io
import json
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import CdpruneError, CheckFailed
from ..storage import (HOLDER_FILE, LOCK_FILE, atomic_write_bytes, load_json_file, lock_directory, read_json_object,
                       remove_stale_scratch, remove_stale_temps, scratch_folder)
from ..measure.latency import ONNX_OPSET, onnx_bytes, require_module
from ..measure.quantize import INT8_PER_CHANNEL, INT8_QUANT_FORMAT, static_int8
from ..measure.quantize import SCRATCH_PREFIX as INT8_SCRATCH
from ..measure.runtimes import get_runtime
from ..pruning import PruningPlan
from ..records import VERSION, Record
from ..runs import METRICS_FILE, PLAN_FILE, SETTINGS_FILE, WEIGHTS_FILE, load_run, run_data
from ..train import CHECKPOINT_NAME, HISTORY_NAME
from ..tasks import DEFAULT_TASK, get_task, list_tasks
from .evaluate import evaluate_file, run_task
from .formats import FORMATS, ExportFormat, get_format, register_format

OPSET = ONNX_OPSET
INPUT_NAME = "input"
SCRATCH_PREFIXES = ("cdprune-export-", INT8_SCRATCH)  # the system temp folders an int8 export works in
# What a run directory holds besides its exported models (docs/design.md, "File formats").
EXPORTS_FILE = "exports.json"  # the run's record of its exports, one entry per file
RUN_FILES = (EXPORTS_FILE, SETTINGS_FILE, PLAN_FILE, WEIGHTS_FILE, METRICS_FILE, CHECKPOINT_NAME, HISTORY_NAME, LOCK_FILE, HOLDER_FILE)
DEFAULT_CALIBRATION_IMAGES = 256
ONNX_METADATA_KEYS = ("cdprune_version", "model", "architecture", "plan_digest", "task", "input_name", "output_name",
                      "input_shape", "layout", "channel_order", "preprocess", "mean", "std", "class_names", "precision",
                      "quantization")
# The int8 settings (QDQ, per-channel int8 weights, uint8 activations, MinMax) and their evidence: measure/quantize.py.
# int8 through PyTorch's PT2E flow (ExecuTorch, LiteRT): the XNNPACK (and LiteRT) quantiser's symmetric
# configuration, per-channel int8 weights and int8 activations observed by histograms of the calibration images.
PT2E_INT8 = {"format": "PT2E", "per_channel": True, "activations": "int8", "weights": "int8",
             "calibration": "Histogram"}


def output_name(task: str = DEFAULT_TASK) -> str:
    """The name of an exported model's output, as `task` names it ("logits" for classify, "image" for denoise
    and sr)."""
    if task not in list_tasks():
        raise CdpruneError(f"unknown task '{task}'", f"choose one of {', '.join(list_tasks())}")
    return get_task(task).output_name


def run_output_name(metrics) -> str:
    """The ONNX output name of a run's task (runs from before tasks existed are classifiers)."""
    return output_name(metrics.task or DEFAULT_TASK)


OUTPUT_NAME = output_name()


def require_deploy(module: str):
    """Import `module` (onnx, onnxruntime) or say, in one line, how to install it."""
    return require_module(module)


def export_model(model: torch.nn.Module, input_shape, format: str, path: str | Path, *, metadata: dict | None = None,
                 output: str = OUTPUT_NAME, precision: str = "fp32", images: np.ndarray | None = None,
                 batch: int | None = 1) -> Path:
    """Write `model` for inputs of shape (C, H, W) to `path` as `format` (a row of `formats.FORMATS`).

    metadata: entries the file carries (ONNX: key -> JSON-ready value, stored as JSON text); a format with
    no place for them gets the sidecar `<path>.json` (`sidecar_path`), written before the file. precision:
    one the format writes; below fp32 it is calibrated on `images` (float32 N×C×H×W, normalised). batch:
    the input's fixed batch size, 1 by default as phones and boards run it; None: a dynamic batch axis,
    for formats that write one. The model itself is left as it was (device and train/eval mode): a CPU
    copy is exported.
    """
    fmt = get_format(format)
    fmt.check_precision(precision)
    if precision != "fp32" and (images is None or len(images) == 0):
        raise CdpruneError(f"a {precision} export is calibrated on images: pass some (images=, float32 N×C×H×W)")
    extra = check_batch(fmt, batch)
    fmt.require()
    model = copy.deepcopy(model).cpu().eval()
    data = fmt.export(model, tuple(input_shape), precision=precision, metadata=metadata or {}, output=output,
                      images=images, **extra)
    path = Path(path)
    if not fmt.metadata_in_file and metadata:
        atomic_write_bytes(sidecar_path(path), sidecar_bytes(metadata, precision, batch, images))
    atomic_write_bytes(path, data)
    return path


def check_batch(fmt: ExportFormat, batch: int | None) -> dict:
    """The exporter's batch argument for `fmt` ({} for a format that takes none), or a one-line refusal."""
    if batch is None and not fmt.dynamic_batch:
        able = [f.name for f in FORMATS.values() if f.dynamic_batch]
        raise CdpruneError(f"{fmt.title} files have a fixed batch size", "drop --dynamic-batch, or use --format "
                           f"{' or '.join(able)}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1):
        raise CdpruneError(f"batch must be a whole number of at least 1, got {batch!r}")
    return {"batch": batch} if fmt.takes_batch else {}


def sidecar_path(path: str | Path) -> Path:
    """The JSON file beside an exported file that carries its metadata, for formats with no place for them."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sidecar_bytes(metadata: dict, precision: str, batch: int | None, images: np.ndarray | None) -> bytes:
    entries = {**metadata, "precision": precision, "batch": batch}
    if precision == "int8":
        entries["quantization"] = {**PT2E_INT8, "calibration_images": int(len(images))}
    return (json.dumps(entries, indent=1) + "\n").encode()


def exported_metadata(path: str | Path) -> dict:
    """The metadata of an exported file: from the file itself (ONNX), else from its sidecar `<file>.json`;
    {} when it has none."""
    path = Path(path)
    if path.suffix == ".onnx":
        return read_metadata(path)
    sidecar = sidecar_path(path)
    again = f"export {path.name} again with 'cdprune export'"
    return load_json_file(sidecar, "export metadata", missing=again, fix=again) if sidecar.is_file() else {}


def _onnx_export(model, input_shape, *, precision, metadata, output, images, batch=1) -> bytes:
    """An ONNX file (opset OPSET, batch fixed or dynamic, metadata), statically quantised for int8."""
    onnx = require_deploy("onnx")
    proto = onnx.load_from_string(onnx_bytes(model, input_shape, INPUT_NAME, output, dynamic_batch=batch is None,
                                             batch=batch or 1))
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto)  # fail here, not on the device
    if precision == "fp32":
        return proto.SerializeToString()
    with scratch_folder(SCRATCH_PREFIXES[1]) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(proto.SerializeToString())
        return quantized_int8(fp32, images, metadata)


def _describe_onnx(path: Path, output: str) -> dict:
    onnx = require_deploy("onnx")
    first = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return {"opset": OPSET, "input": INPUT_NAME, "output": output, "dynamic_batch": not first.HasField("dim_value"),
            "metadata": read_metadata(path)}


def describe_sidecar(path: Path, output: str) -> dict:
    metadata = exported_metadata(path)
    return {"input": INPUT_NAME, "output": output, "dynamic_batch": metadata.get("batch", 1) is None,
            "metadata": metadata}


def sidecar_precision(path: Path) -> str:
    return exported_metadata(path).get("precision", "fp32")


def _ort_export(model, input_shape, *, precision, metadata, output, images, batch) -> bytes:
    """ONNX Runtime's own format (what ONNX Runtime Mobile loads): the ONNX export, with the graph optimisations
    that hold on every device applied, saved as ORT. Its metadata travel in the sidecar."""
    ort = require_deploy("onnxruntime")
    onnx_file = _onnx_export(model, input_shape, precision=precision, metadata=metadata, output=output,
                             images=images, batch=batch)
    with scratch_folder(SCRATCH_PREFIXES[1]) as tmp:
        options = ort.SessionOptions()
        # As ONNX Runtime's own converter (tools.convert_onnx_models_to_ort) does by default: every level, less the
        # NCHWc layout transformer, which makes an x86-only model. An ORT file is not optimised again when loaded, so
        # basic optimisations alone leave int8 QDQ pairs unfused: 5.7× slower than the int8 ONNX file (VGG-16 FA-0.5).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "model.ort")
        options.add_session_config_entry("session.save_model_format", "ORT")
        options.log_severity_level = 3
        ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["NchwcTransformer"])
        return (Path(tmp) / "model.ort").read_bytes()


def _torchscript_export(model, input_shape, *, precision, metadata, output, images) -> bytes:
    """A CPU trace in eval mode, for `torch.jit.load` on the device (it has no place for metadata)."""
    example = torch.randn(1, *input_shape)
    buffer = io.BytesIO()
    # The tracer is deprecated in favour of torch.export, but it gives a loadable archive on every torch >= 2.3.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(model, example), buffer)
    return buffer.getvalue()


def set_metadata(proto, metadata: dict) -> None:
    """Replace the entries of `metadata` in an ONNX model's metadata_props, each value as JSON text."""
    keep = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for p in keep:
        proto.metadata_props.add(key=p.key, value=p.value)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))


def read_metadata(path: str | Path) -> dict:
    """The metadata an exported ONNX file carries, values decoded from JSON (text that is not JSON stays text)."""
    onnx = require_deploy("onnx")
    out = {}
    for prop in onnx.load(str(path), load_external_data=False).metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except ValueError:
            out[prop.key] = prop.value
    return out


def run_metadata(metrics, plan_digest: str | None) -> dict:
    """What a device needs to know about a run's model, as ONNX metadata entries (ONNX_METADATA_KEYS)."""
    task = metrics.task or DEFAULT_TASK
    channels = metrics.input_shape[0]
    order = {1: "grayscale", 3: "RGB"}.get(channels, f"{channels} channels")
    return {"cdprune_version": VERSION, "model": metrics.model, "architecture": metrics.architecture,
            "plan_digest": plan_digest, "task": task, "input_name": INPUT_NAME, "output_name": output_name(task),
            "input_shape": list(metrics.input_shape), "layout": "NCHW", "channel_order": order,
            "preprocess": "x = (pixel / 255 - mean) / std per channel, pixels 0..255", "mean": list(metrics.mean),
            "std": list(metrics.std), "class_names": list(metrics.class_names), "precision": "fp32"}


def calibration_set(run_dir: str | Path, count: int, data_dir: str | None = None) -> np.ndarray:
    """`count` training inputs of a run (fewer if it trained on fewer) as the network sees them, without
    augmentation: normalised images for classify, degraded images for denoise and sr (`Task.exported_batch`).

    They are drawn at random with the run's seed, so the same run calibrates the same way every time.
    """
    try:
        train_set, metrics = run_data(run_dir, "train", data_dir)
    except CdpruneError as exc:
        raise CdpruneError(f"int8 calibration needs the run's training images: {exc}") from None
    seed = int(metrics.settings.get("seed", 0))
    picked = np.sort(np.random.default_rng(seed).choice(len(train_set), size=min(count, len(train_set)), replace=False))
    return run_task(metrics).exported_batch(train_set, torch.from_numpy(picked))[0].numpy()


def check_calibration_images(count) -> int:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise CdpruneError(f"calibration images (--calibration-images) must be a whole number of at least 1, got "
                           f"{count!r}")
    return int(count)


def quantize_int8(fp32_path: str | Path, path: str | Path, images: np.ndarray, metadata: dict | None = None, *,
                  quant_format: str = INT8_QUANT_FORMAT, per_channel: bool = INT8_PER_CHANNEL) -> Path:
    """Write a statically quantised int8 copy of the ONNX file `fp32_path` to `path`, calibrated on `images`.

    images: float32 N×C×H×W inputs as the model receives them (normalised). quant_format ("QDQ" or
    "QOperator") and per_channel default to the measured choice (measure/quantize.py; benchmarks/edge_latency.py
    compares all four); the quantisation is recorded in the file's metadata.
    """
    data = quantized_int8(fp32_path, images, metadata, quant_format=quant_format, per_channel=per_channel)
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def quantized_int8(fp32_path: str | Path, images: np.ndarray, metadata: dict | None = None, *,
                   quant_format: str = INT8_QUANT_FORMAT, per_channel: bool = INT8_PER_CHANNEL) -> bytes:
    """The content of `quantize_int8`'s file."""
    onnx = require_deploy("onnx")
    proto, quantization = static_int8(fp32_path, images, INPUT_NAME, quant_format=quant_format,
                                      per_channel=per_channel)
    # The quantiser leaves markers of its own ("onnx.infer": "onnxruntime.quant"); dropped, so that every
    # entry a device reads is one of ours and JSON text.
    del proto.metadata_props[:]
    set_metadata(proto, {**(metadata or {}), "precision": "int8", "quantization": quantization})
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


@dataclass(frozen=True)
class ExportResult(Record):
    """A written deployment file. ONNX files also name their opset, input, output and metadata.

    An int8 export also compares the int8 file with the fp32 model it came from (`comparison`): the
    task's score on the run's test set (`score`, named by `score_name`: accuracy, or PSNR in dB; `test_acc`
    holds it for classify runs only), file size in bytes, and ONNX Runtime latency (p50 ms, batch 1, 1 thread).
    """

    path: str
    format: str
    bytes: int
    opset: int | None = None
    input: str | None = None
    output: str | None = None
    dynamic_batch: bool = False
    precision: str = "fp32"
    metadata: dict = field(default_factory=dict)
    comparison: dict | None = None
    # The file tested in its runtime: test_acc, recorded_acc, test_size, bytes, latency_ms by thread count
    # ({"1": p50, "2": p50}, batch 1), runtime version. None for a format with no runtime, or a task that
    # does not score exports; `unchecked` says why a check that was due did not happen.
    check: dict | None = None
    unchecked: str | None = None


def check_not_a_run_file(out: str | Path) -> None:
    """Refuse an output path that is one of a run directory's own files: writing there would lose the run."""
    path = Path(out).expanduser().resolve()
    in_a_run = any((path.parent / name).exists() for name in (SETTINGS_FILE, METRICS_FILE))
    if in_a_run and path.name in RUN_FILES:
        raise CdpruneError(f"{out} is a file of the run in {path.parent}, which writing there would destroy",
                           f"choose another file (--out), e.g. {path.parent / get_format('onnx').file_name('fp32')}")


def export_run(run_dir: str | Path, format: str, out: str | Path | None = None, *,
               model: str | torch.nn.Module | None = None, int8: bool = False,
               calibration_images: int = DEFAULT_CALIBRATION_IMAGES, data_dir: str | None = None,
               latency_time_s: float = 1.0, allow_changed_source: bool = False, dynamic_batch: bool = False,
               check: bool = True) -> ExportResult:
    """Export a finished run's model (rebuilt from plan + weights); default file: RUN_DIR/model<suffix>
    (model.onnx, model.pte, model.pt: the format's row in `formats.FORMATS`).

    model: the run's model reference (or unpruned instance) when it is not a registered model (see load_run).
    int8: write a statically quantised model instead (default file RUN_DIR/model.int8<suffix>), in a
        format whose row lists int8, calibrated on `calibration_images` training images of the run,
        and compare it with the fp32 model in the format's runtime: the task's score on the run's test set,
        file size, latency for `latency_time_s` seconds each (batch 1, 1 thread). data_dir: where the
        run's data lives now, when it moved.
    dynamic_batch: a dynamic batch axis instead of the fixed batch of 1 (formats whose row offers it).
    check: test the written file in its runtime (`ExportResult.check`): its score on the run's test set
        beside the run's own, its size, and its batch-1 latency at 1 and 2 threads (`latency_time_s` each),
        for formats with a runtime and tasks that score exported files. The result is also kept in the
        run's `exports.json`.
    """
    fmt = get_format(format)
    precision = "int8" if int8 else "fp32"
    fmt.check_precision(precision)
    batch = None if dynamic_batch else 1
    check_batch(fmt, batch)
    fmt.require()
    if int8:
        calibration_images = check_calibration_images(calibration_images)
    if out is not None:
        check_not_a_run_file(out)
    net, metrics = load_run(run_dir, model, allow_changed_source=allow_changed_source)
    with lock_directory(run_dir):  # the temp files a killed export left in the run (PIDs tell them apart)
        remove_stale_temps(run_dir)
    for prefix in SCRATCH_PREFIXES:
        remove_stale_scratch(prefix)
    task = run_task(metrics)
    if int8 and not task.scores_exports:
        raise CdpruneError(f"--int8 compares int8 with fp32 on the test set, which cdprune scores for "
                           f"{' and '.join(n for n in list_tasks() if get_task(n).scores_exports)} runs only; "
                           f"export {run_dir} as fp32 (without --int8)")
    plan_path = Path(run_dir) / PLAN_FILE
    digest = PruningPlan.load(plan_path).to_dict()["digest"] if plan_path.exists() else None
    metadata = run_metadata(metrics, digest)
    shape = tuple(metrics.input_shape)
    output = run_output_name(metrics)
    path = Path(out or Path(run_dir) / fmt.file_name(precision))
    checkable = check and fmt.runtime is not None and get_runtime(fmt.runtime).load is not None and task.scores_exports
    # Everything the checks need is loaded before the first byte is written.
    test_set, unchecked = None, None
    if int8 or checkable:
        try:
            test_set, _ = run_data(run_dir, "test", data_dir)
        except CdpruneError as exc:
            if int8:
                raise
            unchecked = f"the run's test set could not be loaded ({exc})"
    if not int8:
        export_model(net, shape, format, path, metadata=metadata, output=output, batch=batch)
        figures = _check_file(path, fmt, test_set, task, shape, latency_time_s) if test_set is not None else None
        if figures is not None and metrics.test_loss is not None:  # runs from before it record no loss
            figures["reproduces_run"] = reproduces(figures["test_loss"], metrics.test_loss, metrics.device)
        result = _keep(run_dir, _result(fmt, path, output, precision, check=_with_record(figures, metrics, test_set),
                                        unchecked=unchecked if checkable else None))
        if figures is not None and figures.get("reproduces_run") is False:
            raise CheckFailed(f"{path} was written, but on the run's test set its loss is {figures['test_loss']:.6g} "
                              f"where the run's model had {metrics.test_loss:.6g}, so it does not compute what the "
                              "run's model computes", "do not ship it; export with the model reference and arguments "
                              "the run was trained with", result=result)
        return result

    images = calibration_set(run_dir, calibration_images, data_dir)
    with scratch_folder(SCRATCH_PREFIXES[0]) as tmp:
        fp32 = export_model(net, shape, format, Path(tmp) / f"fp32{fmt.suffix}", metadata=metadata, output=output,
                            batch=batch)
        export_model(net, shape, format, path, metadata=metadata, output=output, precision=precision, images=images,
                     batch=batch)
        figures = {name: _check_file(file, fmt, test_set, task, shape, latency_time_s, threads=(1,) if name == "fp32"
                                     else CHECK_THREADS) for name, file in (("fp32", fp32), (precision, path))}
    flat = {name: {key: f[key] for key in ("test_acc", "score", "test_loss", "bytes")} | {"latency_ms": f["latency_ms"]["1"]}
            for name, f in figures.items()}
    # test_acc and recorded_acc: the score of classify runs, null for others (as in the run records).
    comparison = {**flat, "score_name": task.score.name, "test_size": len(test_set), "recorded_score": metrics.score,
                  "recorded_acc": metrics.test_acc, "batch": 1, "threads": 1,
                  "size_ratio": flat["int8"]["bytes"] / flat["fp32"]["bytes"],
                  "speedup": flat["fp32"]["latency_ms"] / flat["int8"]["latency_ms"]}
    return _keep(run_dir, _result(fmt, path, output, precision, comparison,
                                  check=_with_record(figures[precision], metrics, test_set)))


CHECK_THREADS = (1, 2)
# An fp32 file computes what the PyTorch model computes up to float rounding (1e-4 on the outputs, tested), so on
# the CPU its mean test loss matches the run's to about 1e-6; an untrained net whose forward lost a residual add
# still missed it by 4e-4. A run evaluated on a GPU used mixed precision (bf16 or fp16), good to about 1e-2.
REPRODUCE_RTOL = {"cpu": 1e-4, "cuda": 2e-2}


def reproduces(file_loss: float, run_loss: float, device: str = "cpu") -> bool:
    """Whether an fp32 file's mean test loss is the run's own, within the relative tolerance of the device the run
    was evaluated on (REPRODUCE_RTOL)."""
    rtol = REPRODUCE_RTOL["cuda" if device.startswith("cuda") else "cpu"]
    return abs(file_loss - run_loss) <= rtol * max(abs(run_loss), 1e-6)


def _check_file(path: Path, fmt: ExportFormat, test_set, task, shape, latency_time_s: float,
                threads: tuple[int, ...] = CHECK_THREADS) -> dict:
    """A written file in its runtime: the task's score on `test_set`, its size, its batch-1 p50 latency at each
    thread count. In this process: every file sees the same conditions, and a fresh interpreter per file would
    cost more than the timing itself."""
    runtime = get_runtime(fmt.runtime)
    loss, score = evaluate_file(path, test_set, runtime.name, task=task)
    latency = {str(n): runtime.latency(str(path), shape, threads=n, min_time_s=latency_time_s).p50_ms for n in threads}
    return {"score_name": task.score.name, "score": score, "test_acc": task.accuracy(score), "test_loss": loss,
            "bytes": path.stat().st_size, "latency_ms": latency, "runtime": runtime.version()}


def _with_record(figures: dict | None, metrics, test_set) -> dict | None:
    if figures is None:
        return None
    return {**figures, "recorded_score": metrics.score, "recorded_acc": metrics.test_acc, "test_size": len(test_set),
            "batch": 1}


def _keep(run_dir: str | Path, result: "ExportResult") -> "ExportResult":
    """Add the export to the run's record of its exports (EXPORTS_FILE, one entry per file)."""
    record = Path(run_dir) / EXPORTS_FILE
    with lock_directory(run_dir):
        try:
            kept = read_json_object(record, "export record") or {}
        except CdpruneError:
            kept = {}  # a damaged record of earlier exports is replaced, not a reason to refuse this one
        kept[str(Path(result.path).resolve())] = result.to_dict()
        atomic_write_bytes(record, (json.dumps(kept, indent=1) + "\n").encode())
    return result


def _result(fmt: ExportFormat, path: Path, output: str, precision: str, comparison: dict | None = None, *,
            check: dict | None = None, unchecked: str | None = None) -> ExportResult:
    described = fmt.describe(path, output) if fmt.describe else {}
    return ExportResult(path=str(path), format=fmt.name, bytes=path.stat().st_size, precision=precision,
                        comparison=comparison, check=check, unchecked=unchecked, **described)


def _onnx_precision(path: Path) -> str:
    onnx = require_deploy("onnx")
    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    quantised = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
    return "int8" if ops & quantised else "fp32"


# The export-format table's built-in rows (formats.py; docs/design.md §6.3).
register_format(ExportFormat("onnx", "ONNX", ".onnx", _onnx_export, runtime="onnxruntime",
                             precisions=("fp32", "int8"), bench=True, eval=True, describe=_describe_onnx,
                             read_precision=_onnx_precision, takes_batch=True, dynamic_batch=True))
register_format(ExportFormat("ort", "ORT", ".ort", _ort_export, runtime="onnxruntime", precisions=("fp32", "int8"),
                             eval=True, describe=describe_sidecar, read_precision=sidecar_precision,
                             metadata_in_file=False, takes_batch=True, dynamic_batch=True))
register_format(ExportFormat("torchscript", "TorchScript", ".pt", _torchscript_export))
