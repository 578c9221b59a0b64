"""Deploy — a trained run on the device: benchmark it in a fresh process, export it (ONNX fp32 or int8,
TorchScript), test an exported ONNX file on the run's test set, write sample pictures of a restoration
run. The formats are one table (`formats.py`)."""
from ..measure.runtimes import RUNTIMES, Runtime, register_runtime
from .bench import BenchResult, bench
from .evaluate import OnnxEvalResult, eval_onnx
from .export import (INPUT_NAME, ONNX_METADATA_KEYS, OPSET, OUTPUT_NAME, ExportResult, export_model, export_run,
                     output_name, read_metadata)
from .formats import FORMATS, ExportFormat, bench_runtimes, export_formats, register_format
from .samples import SamplesResult, write_samples

__all__ = ["RUNTIMES", "Runtime", "register_runtime", "BenchResult", "bench", "OnnxEvalResult", "eval_onnx", "FORMATS",
           "ExportFormat", "bench_runtimes", "export_formats", "register_format", "INPUT_NAME", "ONNX_METADATA_KEYS",
           "OPSET",
           "OUTPUT_NAME", "ExportResult", "export_model", "export_run", "output_name", "read_metadata", "SamplesResult",
           "write_samples"]
