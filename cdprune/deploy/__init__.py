"""Deploy — a trained run on the device: benchmark it in a fresh process, export it (ONNX fp32 or int8,
TorchScript), test an exported ONNX file on the run's test set."""
from .bench import RUNTIMES, BenchResult, bench
from .evaluate import OnnxEvalResult, eval_onnx
from .export import (FORMATS, INPUT_NAME, ONNX_METADATA_KEYS, OPSET, OUTPUT_NAME, ExportResult, export_model, export_run,
                     output_name, read_metadata)

__all__ = ["RUNTIMES", "BenchResult", "bench", "OnnxEvalResult", "eval_onnx", "FORMATS", "INPUT_NAME",
           "ONNX_METADATA_KEYS", "OPSET", "OUTPUT_NAME", "ExportResult", "export_model", "export_run", "output_name",
           "read_metadata"]
