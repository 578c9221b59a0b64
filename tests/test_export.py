"""Export: ONNX and TorchScript files that compute what the PyTorch model computes."""
import json
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import cdprune
from cdprune import models
from cdprune.cli import main
from cdprune.deploy import export_model, export_run
from cdprune.runs import load_run
from support import run_cli as run

SHAPE = (3, 32, 32)


def torch_outputs(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def assert_onnx_matches(path, model, classes: int):
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *SHAPE), dtype=np.float32)
        got = session.run(["logits"], {"input": x})[0]
        want = torch_outputs(model, x)
        assert got.shape == (batch, classes)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
        assert np.ptp(want) > 0  # the comparison is not between two constant outputs


def test_onnx_of_a_pruned_run_matches_pytorch(pruned_run, capsys):
    code, out, _ = run(capsys, "export", pruned_run, "--format", "onnx", "--dynamic-batch", "--json")
    info = json.loads(out)
    assert code == 0 and info["path"] == str(pruned_run / "model.onnx") and info["opset"] == 17
    assert info["bytes"] == (pruned_run / "model.onnx").stat().st_size
    model, metrics = load_run(pruned_run)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in models.create("alexnet").parameters())
    assert_onnx_matches(pruned_run / "model.onnx", model, metrics.num_classes)
    assert not [p for p in pruned_run.iterdir() if p.name.endswith(".tmp")]  # the atomic write left nothing


def test_onnx_of_a_dense_mobilenetv2_matches_pytorch(tmp_path):
    model = models.create("mobilenetv2")
    model.train()
    path = export_model(model, SHAPE, "onnx", tmp_path / "mnv2.onnx", batch=None)
    assert model.training  # the caller's model is left as it was
    assert_onnx_matches(path, model, 10)


def test_torchscript_of_a_pruned_run_matches_pytorch(pruned_run, tmp_path, capsys):
    code, out, _ = run(capsys, "export", pruned_run, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert code == 0 and str(tmp_path / "m.pt") in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(tmp_path / "m.pt"))
    model, _ = load_run(pruned_run)
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, *SHAPE), dtype=np.float32)
        np.testing.assert_allclose(torch_outputs(scripted, x), torch_outputs(model, x), rtol=0, atol=1e-4)


def test_export_run_default_path_is_in_the_run(pruned_run):
    assert export_run(pruned_run, "torchscript").path == str(pruned_run / "model.pt")
    assert (pruned_run / "model.pt").stat().st_size > 0


def test_missing_onnx_names_the_extra(pruned_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    code, _, err = run(capsys, "export", pruned_run, "--out", tmp_path / "m.onnx")
    assert code == 2 and err.startswith("cdprune: error:") and len(err.strip().splitlines()) == 1
    assert "pip install 'cdprune[deploy]'" in err and not (tmp_path / "m.onnx").exists()


def test_directory_without_a_run_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "export", tmp_path, "--format", "torchscript")
    assert code == 2 and "metrics.json missing" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_is_refused(pruned_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(pruned_run), "--format", "coreml"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(cdprune.CdpruneError, match="unknown export format"):
        export_run(pruned_run, "coreml")


# ---- what travels with the model: ONNX metadata -------------------------------------------------

def test_onnx_metadata_round_trips(pruned_run, tmp_path, capsys):
    code, _, err = run(capsys, "export", pruned_run, "--out", tmp_path / "m.onnx")
    assert code == 0, err
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}  # every value is JSON text
    recorded = json.loads((pruned_run / "metrics.json").read_text())
    digest = json.loads((pruned_run / "plan.json").read_text())["digest"]
    assert (meta["input_shape"], meta["mean"], meta["std"], meta["class_names"]) == (
        recorded["input_shape"], recorded["mean"], recorded["std"], recorded["class_names"])
    assert len(meta["class_names"]) == recorded["num_classes"] and meta["std"] and meta["mean"]
    assert (meta["layout"], meta["channel_order"], meta["task"], meta["precision"]) == ("NCHW", "RGB", "classify",
                                                                                       "fp32")
    assert (meta["plan_digest"], meta["model"], meta["cdprune_version"]) == (digest, "alexnet", cdprune.__version__)
    assert meta["output_name"] == proto.graph.output[0].name == "logits"
    assert meta["input_name"] == proto.graph.input[0].name == "input"
    assert set(cdprune.deploy.ONNX_METADATA_KEYS) - {"quantization"} <= set(meta)


# ---- ONNX files tested on the run's test set ----------------------------------------------------

def test_eval_onnx_agrees_with_the_pytorch_model(pruned_run, tmp_path, capsys):
    export_run(pruned_run, "onnx", tmp_path / "m.onnx")
    code, out, err = run(capsys, "eval", pruned_run, "--onnx", tmp_path / "m.onnx", "--json")
    assert code == 0, err
    onnx_result, torch_result = json.loads(out), cdprune.eval_run(pruned_run)
    assert onnx_result["test_size"] == torch_result.test_size == 32 and onnx_result["precision"] == "fp32"
    # The same function in another runtime: logits agree to ~1e-5, so at most a near-tie can flip.
    assert abs(onnx_result["test_acc"] - torch_result.test_acc) <= 1 / 32
    assert onnx_result["test_loss"] == pytest.approx(torch_result.test_loss, rel=1e-3)
    assert onnx_result["recorded_acc"] == torch_result.recorded_acc


def test_eval_onnx_refuses_a_file_of_another_model(pruned_run, tmp_path, capsys):
    export_model(models.create("alexnet"), (3, 64, 64), "onnx", tmp_path / "big.onnx")
    code, _, err = run(capsys, "eval", pruned_run, "--onnx", tmp_path / "big.onnx")
    assert code == 2 and "takes inputs 3×64×64" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "eval", pruned_run, "--onnx", tmp_path / "missing.onnx")
    assert code == 2 and "not found: export one with 'cdprune export" in err


# ---- int8 ---------------------------------------------------------------------------------------

def test_int8_export_reports_accuracy_size_and_latency(pruned_run, tmp_path, capsys):
    code, out, err = run(capsys, "export", pruned_run, "--int8", "--calibration-images", "16", "--out",
                         tmp_path / "q.onnx", "--json")
    assert code == 0, err
    r = json.loads(out)
    c, path = r["comparison"], tmp_path / "q.onnx"
    assert r["precision"] == "int8" and r["bytes"] == path.stat().st_size == c["int8"]["bytes"]
    proto = onnx.load(str(path))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in proto.graph.node}  # QDQ format
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["precision"] == "int8" and meta["quantization"]["calibration_images"] == 16
    assert meta["class_names"] == json.loads((pruned_run / "metrics.json").read_text())["class_names"]
    # The fp32 figures are those of the plain export; the int8 ones those of the written file.
    fp32 = export_run(pruned_run, "onnx", tmp_path / "fp32.onnx")
    assert c["fp32"]["bytes"] == fp32.bytes and c["size_ratio"] == pytest.approx(r["bytes"] / fp32.bytes)
    assert c["size_ratio"] < 0.3  # int8 weights: a quarter of the float32 bytes, plus scales
    for name, file in (("fp32", tmp_path / "fp32.onnx"), ("int8", path)):
        evaluated = cdprune.eval_onnx(pruned_run, file)
        assert evaluated.precision == name and c[name]["test_acc"] == evaluated.test_acc
        assert c[name]["latency_ms"] > 0
    assert c["speedup"] == pytest.approx(c["fp32"]["latency_ms"] / c["int8"]["latency_ms"])
    assert c["test_size"] == 32 and (c["batch"], c["threads"]) == (1, 1)


def test_int8_text_compares_fp32_and_int8(pruned_run, tmp_path, capsys):
    result = export_run(pruned_run, "onnx", tmp_path / "q.onnx", int8=True, calibration_images=8, latency_time_s=0.05)
    text = cdprune.report.export_text(result)
    rows = {line.split("  ")[0]: line.split() for line in text.splitlines()[3:]}
    assert text.startswith(f"onnx int8 model written to {tmp_path / 'q.onnx'}")
    assert "calibrated on 8 training images" in text
    assert rows["test accuracy"][-2] == f"{100 * (result.comparison['int8']['test_acc'] - result.comparison['fp32']['test_acc']):+.2f}"
    assert rows["file size"][-1] == f"{result.comparison['size_ratio']:.2f}×"


@pytest.mark.parametrize("fmt, per_channel", [("QOperator", False), ("QDQ", False)])
def test_quantize_int8_writes_the_variant_it_is_asked_for(pruned_run, tmp_path, fmt, per_channel):
    # benchmarks/edge_latency.py times all four variants; each must be what its metadata says.
    from cdprune.deploy.export import calibration_set, quantize_int8
    fp32 = export_run(pruned_run, "onnx", tmp_path / "fp32.onnx")
    path = quantize_int8(fp32.path, tmp_path / "q.onnx", calibration_set(pruned_run, 8), quant_format=fmt,
                         per_channel=per_channel)
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert ("QLinearConv" in ops) == (fmt == "QOperator") and ("DequantizeLinear" in ops)
    # Per-tensor weights carry one scale per weight tensor; per-channel one per output channel.
    scales = [t for t in proto.graph.initializer if t.name.endswith("_scale") and "weight" in t.name.lower()]
    assert scales and all(len(t.dims) == 0 or list(t.dims) == [1] for t in scales)
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["quantization"]["format"] == fmt and meta["quantization"]["per_channel"] is per_channel
    assert cdprune.eval_onnx(pruned_run, path).precision == "int8"


def test_quantize_int8_refuses_an_unknown_format(pruned_run, tmp_path):
    from cdprune.deploy.export import quantize_int8
    fp32 = export_run(pruned_run, "onnx", tmp_path / "fp32.onnx")
    with pytest.raises(cdprune.CdpruneError, match="unknown int8 format 'QInt'"):
        quantize_int8(fp32.path, tmp_path / "q.onnx", np.zeros((1, *SHAPE), np.float32), quant_format="QInt")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("argv, message", [
    (["--int8", "--format", "torchscript"],
     "int8 models are written as ONNX, ORT, ExecuTorch or LiteRT: use --format onnx, ort, pte or tflite with --int8"),
    (["--int8", "--calibration-images", "0"], "calibration images (--calibration-images) must be a whole number"),
])
def test_bad_int8_arguments_write_nothing(pruned_run, tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "export", pruned_run, *argv, "--out", tmp_path / "q.onnx")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
