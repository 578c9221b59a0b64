"""Export a trained (pruned or dense) model to a deployable file: ONNX or TorchScript.

ONNX files use opset 17, one input named `input` (N×C×H×W float32) and one output
named by the run's task: `logits` (N×classes) for classify, `image` (N×C×H×W) for the
restoration tasks, with a dynamic batch axis N. TorchScript files are a
CPU trace in eval mode, for `torch.jit.load` on the device. Files are written
atomically, so a reader never sees half of one.
"""
from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CdpruneError
from ..io import atomic_write_bytes
from ..records import Record
from ..runs import load_run
from ..tasks import KINDS as TASK_KINDS

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}  # format -> default file name in a run directory


def require_deploy(module: str):
    """Import `module` (onnx, onnxruntime) or say, in one line, how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise CdpruneError(f"{module} is not installed: pip install 'cdprune[deploy]'") from None


def export_model(model: torch.nn.Module, input_shape, format: str, path: str | Path,
                 output_name: str = OUTPUT_NAME) -> Path:
    """Write `model` for inputs of shape (C, H, W) to `path` as `format` ("onnx" or "torchscript");
    `output_name` names the ONNX output ("logits", or "image" for a restoration model).

    The model itself is left as it was (device and train/eval mode): a CPU copy is exported.
    """
    if format not in FORMATS:
        raise CdpruneError(f"unknown export format '{format}': choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        onnx = require_deploy("onnx")
    model = copy.deepcopy(model).cpu().eval()
    example = torch.randn(1, *input_shape)
    buffer = io.BytesIO()
    # Both exporters are deprecated in favour of torch.export, but they are the ones that
    # give a plain ONNX file / a loadable TorchScript archive quickly on every torch >= 2.3.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        if format == "onnx":
            torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[output_name],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}})
        else:
            torch.jit.save(torch.jit.trace(model, example), buffer)
    data = buffer.getvalue()
    if format == "onnx":
        onnx.checker.check_model(onnx.load_from_string(data))  # fail here, not on the device
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


@dataclass(frozen=True)
class ExportResult(Record):
    """A written deployment file. ONNX files also name their opset, input and output."""

    path: str
    format: str
    bytes: int
    opset: int | None = None
    input: str | None = None
    output: str | None = None
    dynamic_batch: bool = False


def export_run(run_dir: str | Path, format: str, out: str | Path | None = None, *,
               model: str | torch.nn.Module | None = None) -> ExportResult:
    """Export a finished run's model (rebuilt from plan + weights); default file: RUN_DIR/model.onnx or model.pt.

    model: the run's model reference (or unpruned instance) when it is not a registered model (see load_run).
    """
    if format not in FORMATS:
        raise CdpruneError(f"unknown export format '{format}': choose one of {', '.join(FORMATS)}")
    model, metrics = load_run(run_dir, model)
    output = run_output_name(metrics)
    path = export_model(model, tuple(metrics.input_shape), format, out or Path(run_dir) / FORMATS[format], output)
    onnx = format == "onnx"
    return ExportResult(path=str(path), format=format, bytes=path.stat().st_size, opset=OPSET if onnx else None,
                        input=INPUT_NAME if onnx else None, output=output if onnx else None, dynamic_batch=onnx)


def run_output_name(metrics) -> str:
    """The ONNX output name of a run's task ("logits" for classify, "image" for denoise and sr)."""
    kind = TASK_KINDS.get(metrics.task)
    return kind.output_name if kind is not None else OUTPUT_NAME
