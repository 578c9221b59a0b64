"""Deploy — a trained run on the device: benchmark it in a fresh process, export it (ONNX and ORT, ExecuTorch,
LiteRT, each fp32 or int8; TorchScript), test an exported file on the run's test set in its runtime, write
sample pictures of a restoration run. The formats are one table (`formats.py`)."""
from ..measure.runtimes import RUNTIMES, Runtime, register_runtime
from .bench import BenchResult, bench, file_latency
from .evaluate import OnnxEvalResult, eval_onnx
from .export import (INPUT_NAME, ONNX_METADATA_KEYS, OPSET, OUTPUT_NAME, ExportResult, export_model, export_run,
                     exported_metadata, output_name, read_metadata, sidecar_path)
from . import edge  # noqa: F401 -- registers the ExecuTorch and LiteRT rows
from .formats import FORMATS, ExportFormat, bench_runtimes, export_formats, register_format
from .samples import SamplesResult, write_samples

__all__ = ["RUNTIMES", "Runtime", "register_runtime", "BenchResult", "bench", "file_latency", "OnnxEvalResult", "eval_onnx", "FORMATS",
           "ExportFormat", "bench_runtimes", "export_formats", "register_format", "INPUT_NAME", "ONNX_METADATA_KEYS",
           "OPSET",
           "OUTPUT_NAME", "ExportResult", "export_model", "export_run", "output_name", "read_metadata",
           "exported_metadata", "sidecar_path", "SamplesResult", "write_samples"]
