"""Deploy — a trained run on the device: benchmark it in a fresh process, export it (ONNX, TorchScript)."""
from .bench import RUNTIMES, BenchResult, bench
from .export import FORMATS, INPUT_NAME, OPSET, OUTPUT_NAME, ExportResult, export_model, export_run

__all__ = ["RUNTIMES", "BenchResult", "bench", "FORMATS", "INPUT_NAME", "OPSET", "OUTPUT_NAME", "ExportResult", "export_model",
           "export_run"]
