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
    code, out, _ = run(capsys, "export", pruned_run, "--format", "onnx", "--json")
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
    path = export_model(model, SHAPE, "onnx", tmp_path / "mnv2.onnx")
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
        main(["export", str(pruned_run), "--format", "tflite"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(cdprune.CdpruneError, match="unknown export format"):
        export_run(pruned_run, "tflite")
