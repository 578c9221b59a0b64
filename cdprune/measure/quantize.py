"""Static int8 quantisation of ONNX files, the one way cdprune makes int8 for ONNX Runtime.

`cdprune export --int8` (deploy/export.py) quantises a trained model with it, calibrated on training
images; an int8 latency table (layer_latency.py) quantises every timed layer variant and the dense
network with the same settings, so the table times what `export --int8` ships. It lives here, in
measure/, because deploy/ sits above measure/ (docs/design.md, §8).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np

from ..errors import CdpruneError
from ..storage import scratch_folder
from .latency import require_module

# Static int8 in the QDQ format with per-channel weights, uint8 activations and int8 weights (ONNX
# Runtime's U8S8 for x86). benchmarks/edge_latency.py (part int8-formats) measured all four variants
# of VGG-16 FA-0.5 on a 2-core AMD EPYC Zen 3 (AVX2, no VNNI), ONNX Runtime 1.32, 1 thread: fp32
# 6.93 ms; QDQ 2.26 / 2.36 ms and QOperator 2.15 / 2.31 ms (per-channel / per-tensor), per-channel
# 0.3 pt more accurate. The variants run alike since ONNX Runtime fuses QDQ pairs into the same
# QLinearConv kernels QOperator names; QDQ is the format other execution providers (TensorRT,
# XNNPACK, QNN, NNAPI) read.
INT8_QUANT_FORMAT = "QDQ"
INT8_PER_CHANNEL = True
SCRATCH_PREFIX = "cdprune-int8-"  # the system temp folders quantisation works in


def static_int8(fp32_path: str | Path, images: np.ndarray, input_name: str = "input", *,
                quant_format: str = INT8_QUANT_FORMAT, per_channel: bool = INT8_PER_CHANNEL):
    """(the int8 ONNX model proto, the record of how it was quantised) for the ONNX file `fp32_path`,
    calibrated (MinMax) on `images`, float32 inputs as the model receives them, fed in batches of 16 or of
    the file's fixed batch size. The proto keeps the quantiser's own metadata; callers set theirs."""
    if quant_format not in ("QDQ", "QOperator"):
        raise CdpruneError(f"unknown int8 format '{quant_format}'", "choose QDQ or QOperator")
    onnx = require_module("onnx")
    require_module("onnxruntime")
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0].dim_value
    size = size or 16
    usable = len(images) - len(images) % size or len(images)  # whole batches only (all images when fewer than one)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(images[i:i + size] for i in range(0, usable, size))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    quantization = {"format": quant_format, "per_channel": per_channel, "activations": "uint8",
                    "weights": "int8", "calibration": "MinMax", "calibration_images": int(len(images))}
    with scratch_folder(SCRATCH_PREFIX) as tmp, quiet_quantizer():
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # Shape inference and graph optimisation first, as ONNX Runtime's quantisation guide asks.
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=getattr(QuantFormat, quant_format),
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(str(quantized))
    return proto, quantization


def int8_onnx_bytes(fp32: bytes, input_shape, count: int = 16, seed: int = 0) -> bytes:
    """An ONNX file's bytes quantised like `export --int8`, calibrated on `count` random normal inputs of
    (batch, *input_shape). Random inputs suit timing, not accuracy: latency does not depend on the scales
    calibration picks, only on the int8 kernels the quantised graph runs."""
    onnx = require_module("onnx")
    batch = onnx.load_from_string(fp32).graph.input[0].type.tensor_type.shape.dim[0].dim_value or 1
    name = onnx.load_from_string(fp32).graph.input[0].name
    images = np.random.default_rng(seed).standard_normal((max(count, batch), *input_shape), dtype=np.float32)
    with scratch_folder(SCRATCH_PREFIX) as tmp:
        path = Path(tmp) / "fp32.onnx"
        path.write_bytes(fp32)
        proto, _ = static_int8(path, images, name)
    del proto.metadata_props[:]
    return proto.SerializeToString()


@contextlib.contextmanager
def quiet_quantizer():
    """ONNX Runtime's quantiser logs advice on the root logger and warns; keep both off the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
