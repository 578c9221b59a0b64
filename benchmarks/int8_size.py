"""Where an int8 file's bytes go: why MobileNetV2's int8 files are above 0.3× their fp32 size.

    python benchmarks/int8_size.py

Reads the files that benchmarks/formats.py exported (benchmarks/runs/formats/*/fa-0.5/formats; run
that first) and splits each int8 ONNX and LiteRT file into: int8 weights, int32 biases, per-channel
quantisation parameters (scales and zero points), and the rest (graph, names, metadata). An int8
weight takes a quarter of an fp32 one, but every output channel also carries a bias that stays 32-bit
and its own scale and zero point; a depthwise channel has only 9 weights to amortise them over.
Results: benchmarks/results/int8_size.{json,md}. Nothing here is timed.
"""
from pathlib import Path

import numpy as np

from cdprune.storage import atomic_write_json, atomic_write_text

HERE = Path(__file__).parent
MODELS = ("vgg16", "mobilenetv2")


def onnx_parts(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    parts = {"int8 weights": 0, "int32 biases": 0, "per-channel scales and zero points": 0, "fp32 weights": 0}
    channels = 0
    for tensor in proto.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if tensor.name.endswith("_scale") or tensor.name.endswith("_zero_point"):
            parts["per-channel scales and zero points"] += array.nbytes
        elif array.dtype == np.int8 and array.ndim >= 2:
            parts["int8 weights"] += array.nbytes
            channels += array.shape[0]
        elif array.dtype == np.int32:
            parts["int32 biases"] += array.nbytes
        else:
            parts["fp32 weights"] += array.nbytes
    parts["graph, names and metadata"] = path.stat().st_size - sum(parts.values())
    return {"parts": parts, "output_channels": channels}


def tflite_parts(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    # LiteRT's schema stores a per-channel scale as float32 and its zero point as int64.
    quant = sum(t["quantization_parameters"]["scales"].size * 4 + t["quantization_parameters"]["zero_points"].size * 8
                for t in Interpreter(model_path=str(path)).get_tensor_details()
                if t["quantization_parameters"]["scales"].size > 1)
    return {"parts": {"per-channel scales and zero points": quant,
                      "weights, biases, graph and metadata": path.stat().st_size - quant}}


def main() -> None:
    rows = []
    for model in MODELS:
        folder = HERE / "runs" / "formats" / f"{model}-fashion-mnist-fa0.5" / "fa-0.5" / "formats"
        for fmt, parts in (("onnx", onnx_parts), ("tflite", tflite_parts)):
            fp32, int8 = folder / f"model.{fmt}", folder / f"model.int8.{fmt}"
            if not (fp32.exists() and int8.exists()):
                raise SystemExit(f"{int8} is missing: run benchmarks/formats.py first")
            rows.append({"model": model, "format": fmt, "fp32_bytes": fp32.stat().st_size,
                         "int8_bytes": int8.stat().st_size, **parts(int8)})
    lines = ["# Where an int8 file's bytes go", "",
             "The int8 files of benchmarks/formats.py (FA-0.5 models of the default job), split by what the bytes hold.",
             ""]
    for r in rows:
        ratio = r["int8_bytes"] / r["fp32_bytes"]
        lines += [f"## {r['model']} {r['format']}: {r['int8_bytes'] / 1e6:.2f} MB int8, {ratio:.2f}× of fp32 "
                  f"({r['fp32_bytes'] / 1e6:.2f} MB)", "", "| part | bytes | share of fp32 size |", "|---|---|---|"]
        lines += [f"| {k} | {v:,} | {v / r['fp32_bytes']:.3f}× |" for k, v in r["parts"].items()]
        if "output_channels" in r:
            lines += ["", f"{r['output_channels']:,} output channels carry an int32 bias, and the weights and the bias "
                      f"a scale and zero point each."]
        lines.append("")
    atomic_write_json(HERE / "results" / "int8_size.json", rows)
    atomic_write_text(HERE / "results" / "int8_size.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
