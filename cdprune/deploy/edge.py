"""Exporters for the runtimes phones and boards run: ExecuTorch (`.pte`) and LiteRT (`.tflite`).

Both start from `torch.export` of a CPU copy of the model at a fixed batch size (1 by default).
ExecuTorch lowers the exported program to the XNNPACK delegate (`to_edge_transform_and_lower` with
`XnnpackPartitioner`); LiteRT converts it with `litert_torch.convert` (LiteRT runs it with its
default XNNPACK delegate). Their int8 is PyTorch's PT2E static quantisation: the runtime's quantiser
in its symmetric per-channel configuration annotates the captured graph (`prepare_pt2e`), the run's
training images calibrate it, `convert_pt2e` writes the quantise/dequantise pairs that the lowering
turns into int8 kernels. Neither file has a place for cdprune's metadata, so it travels in the
sidecar `<file>.json` (`export.sidecar_path`). Both inputs stay N×C×H×W, as the PyTorch model takes
them (LiteRT's converter adds the transposes to its own NHWC kernels); the sidecar says so.

The packages are extras (`pip install 'cdprune[executorch]'`, `'cdprune[litert]'`), imported only
when a file is exported or loaded.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..measure.latency import quiet_native_stderr, require_module
from ..measure.quantize import quiet_quantizer
from .export import describe_sidecar, sidecar_precision
from .formats import ExportFormat, register_format

CALIBRATION_BATCH = 16


@contextlib.contextmanager
def _quiet():
    """The exporters' deprecation warnings, progress lines and native start-up notes stay off the terminal."""
    with quiet_quantizer(), quiet_native_stderr(), torch.no_grad():
        yield


def pt2e_int8(model: torch.nn.Module, input_shape, quantizer, images: np.ndarray, *,
              fold_quantize: bool = True) -> torch.nn.Module:
    """`model` statically quantised by PT2E with `quantizer`, calibrated on `images` (float32 N×C×H×W).

    The graph is captured with a dynamic batch axis, so that calibration runs in batches; the result is
    exported again at the file's own batch size. fold_quantize=False keeps the weights float with their
    quantise/dequantise pairs, which LiteRT's converter folds itself (it refuses pre-folded int8 weights).
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batch = torch.export.Dim("batch", min=1, max=max(2, CALIBRATION_BATCH))
    captured = torch.export.export(model, (torch.zeros(2, *input_shape),), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(captured, quantizer)
    for start in range(0, len(images), CALIBRATION_BATCH):
        prepared(torch.from_numpy(np.ascontiguousarray(images[start:start + CALIBRATION_BATCH], dtype=np.float32)))
    return move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=fold_quantize))


def _pte_export(model, input_shape, *, precision, metadata, output, images, batch) -> bytes:
    """An ExecuTorch program, XNNPACK-delegated, for inputs batch×C×H×W; int8 by PT2E with XNNPACK's quantiser."""
    require_module("executorch", "executorch")
    with _quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if precision == "int8":
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                                 get_symmetric_quantization_config)
            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            model = pt2e_int8(model, input_shape, quantizer, images)
        program = torch.export.export(model, (torch.zeros(batch, *input_shape),))
        return bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)


def _tflite_export(model, input_shape, *, precision, metadata, output, images, batch) -> bytes:
    """A LiteRT flatbuffer for N×C×H×W inputs; int8 by PT2E with litert-torch's quantiser (int8 inputs and
    outputs, their scale and zero point in the file, which the `litert` runtime applies)."""
    litert_torch = require_module("litert_torch", "litert")
    with _quiet():
        litert_torch.config.show_progress = False
        quant_config = None
        if precision == "int8":
            from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
            from litert_torch.quantize.quant_config import QuantConfig
            quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            model = pt2e_int8(model, input_shape, quantizer, images, fold_quantize=False)
            quant_config = QuantConfig(pt2e_quantizer=quantizer)
        converted = litert_torch.convert(model, (torch.zeros(batch, *input_shape),), quant_config=quant_config)
        return bytes(converted.model_content())


# The rows (formats.py; docs/design.md §6.3).
register_format(ExportFormat("pte", "ExecuTorch", ".pte", _pte_export, runtime="executorch",
                             precisions=("fp32", "int8"), bench=True, eval=True, describe=describe_sidecar,
                             read_precision=sidecar_precision, packages=("executorch", "torchao"), extra="executorch",
                             metadata_in_file=False, takes_batch=True))
register_format(ExportFormat("tflite", "LiteRT", ".tflite", _tflite_export, runtime="litert",
                             precisions=("fp32", "int8"), bench=True, eval=True, describe=describe_sidecar,
                             read_precision=sidecar_precision, packages=("litert_torch", "torchao"), extra="litert",
                             metadata_in_file=False, takes_batch=True))
