"""Edge formats: ExecuTorch (.pte), LiteRT (.tflite) and ORT (.ort) next to ONNX, fp32 and int8, each loaded in its
runtime and checked against the PyTorch model; metadata beside (or in) the file; a missing extra is one line."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import cdprune
from cdprune.deploy import export_run, exported_metadata, sidecar_path
from cdprune.deploy.export import EXPORTS_FILE
from cdprune.measure.runtimes import LoadedModel, get_runtime
from cdprune.runs import load_run
from support import run_cli as run

NET = str(Path(__file__).parent / "usermodels" / "edgenet.py") + ":EdgeNet"
SETTINGS = cdprune.RunSettings(model=NET, data="synthetic", epochs=2, train_subset=256, test_subset=256, batch_size=32)
QUICK = {"latency_time_s": 0.05}
FP32_ATOL = 1e-4  # float32 through another runtime's kernels: summation order only
EDGE_FORMATS = ("pte", "tflite", "ort", "onnx")
INT8_FORMATS = ("pte", "tflite", "ort")


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory):
    """A tiny trained run of a 30-line CNN with BN, a residual add and a depthwise block, shared by the module."""
    out = tmp_path_factory.mktemp("edgenet")
    cdprune.train_run(out, SETTINGS, None, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(edge_run, tmp_path_factory):
    """Each format's file and result, written once: (format, precision) -> ExportResult."""
    folder = tmp_path_factory.mktemp("exports")
    done = {}

    def get(fmt: str, precision: str = "fp32"):
        if (fmt, precision) not in done:
            name = cdprune.FORMATS[fmt].file_name(precision)
            done[fmt, precision] = export_run(edge_run, fmt, folder / name, int8=precision == "int8",
                                              calibration_images=128, model=NET, **QUICK)
        return done[fmt, precision]

    return get


def torch_outputs(run_dir, x: np.ndarray) -> np.ndarray:
    model, _ = load_run(run_dir, NET)
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt", EDGE_FORMATS)
def test_fp32_file_matches_pytorch_in_its_runtime(edge_run, exported, fmt):
    result = exported(fmt)
    row = cdprune.FORMATS[fmt]
    loaded = get_runtime(row.runtime).load(result.path, 1)
    assert loaded.input_shape == [3, 32, 32] and loaded.output_shape == [10]
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)  # 3: runs a fixed batch-1 file 3×
    want = torch_outputs(edge_run, x)
    got = loaded.run(x)
    assert got.shape == (3, 10) and np.ptp(want) > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=FP32_ATOL)
    assert not result.dynamic_batch  # batch 1 by default, as phones run it


@pytest.mark.parametrize("fmt", EDGE_FORMATS)
def test_export_checks_the_file_and_keeps_the_check_in_the_run(edge_run, exported, fmt):
    result = exported(fmt)
    check = result.check
    assert check["test_size"] == 256 and check["bytes"] == Path(result.path).stat().st_size == result.bytes
    # fp32 in another runtime predicts what PyTorch predicts, up to an image on a decision boundary
    assert abs(check["test_acc"] - check["recorded_acc"]) <= 1 / 256
    assert set(check["latency_ms"]) == {"1", "2"} and all(ms > 0 for ms in check["latency_ms"].values())
    assert check["runtime"].startswith(get_runtime(cdprune.FORMATS[fmt].runtime).packages[0] + " ")
    kept = json.loads((edge_run / EXPORTS_FILE).read_text())
    assert kept[str(Path(result.path).resolve())]["check"] == check


@pytest.mark.parametrize("fmt", INT8_FORMATS)
def test_int8_file_is_within_a_point_of_fp32_and_smaller(edge_run, exported, fmt, capsys):
    result = exported(fmt, "int8")
    c = result.comparison
    assert result.precision == "int8" and result.metadata["precision"] == "int8"
    assert abs(c["int8"]["test_acc"] - c["fp32"]["test_acc"]) <= 0.01
    # int8 weights are a quarter of fp32's; in a net this small the graph, the biases and (ORT) the kernels' own
    # records are a large share of the file (0.25-0.3× on VGG-16: the benchmark's business)
    assert c["int8"]["bytes"] < 0.8 * c["fp32"]["bytes"]
    # eval tests the file by its suffix, in its runtime, and scores it as the export's check did
    code, out, _ = run(capsys, "eval", edge_run, "--file", result.path, "--json")
    scored = json.loads(out)
    assert code == 0 and scored["precision"] == "int8" and scored["test_acc"] == result.check["test_acc"]
    assert scored["runtime"] == get_runtime(cdprune.FORMATS[fmt].runtime).title


@pytest.mark.parametrize("fmt", ["pte", "onnx"])
def test_metadata_round_trips_in_or_beside_the_file(edge_run, exported, fmt):
    result = exported(fmt)
    _, metrics = load_run(edge_run, NET)
    meta = exported_metadata(result.path)
    assert meta == result.metadata
    assert meta["input_shape"] == [3, 32, 32] and meta["layout"] == "NCHW" and meta["precision"] == "fp32"
    assert meta["mean"] == list(metrics.mean) and meta["std"] == list(metrics.std)
    assert meta["class_names"] == list(metrics.class_names) and meta["plan_digest"] is None  # a dense run
    assert sidecar_path(result.path).exists() == (fmt == "pte")  # ONNX carries them in metadata_props
    if fmt == "onnx":
        dim = onnx.load(result.path).graph.input[0].type.tensor_type.shape.dim[0]
        assert dim.dim_value == 1


def test_a_dynamic_batch_is_refused_where_the_format_has_none(edge_run, tmp_path, capsys):
    code, _, err = run(capsys, "export", edge_run, "--model", NET, "--format", "pte", "--dynamic-batch", "--out",
                       tmp_path / "m.pte")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "ExecuTorch files have a fixed batch size: drop --dynamic-batch, or use --format onnx or ort" in err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_extra_is_one_line_naming_it(edge_run, tmp_path, capsys):
    absent = cdprune.register_runtime(cdprune.Runtime(
        "absent", "Absent", ("cdprune_no_such_package",), extra="executorch",
        load=lambda path, threads: LoadedModel(run=lambda x: x, input_shape=[], output_shape=[])))
    cdprune.register_format(cdprune.ExportFormat("absent-fmt", "Absent", ".absent", cdprune.FORMATS["pte"].export,
                                                 runtime=absent.name, eval=True))
    try:
        code, _, err = run(capsys, "export", edge_run, "--model", NET, "--format", "absent-fmt", "--out",
                           tmp_path / "m.absent")
    finally:
        del cdprune.FORMATS["absent-fmt"], cdprune.RUNTIMES["absent"]
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cdprune_no_such_package is not installed: pip install 'cdprune[executorch]'" in err
    assert list(tmp_path.iterdir()) == []


def test_latency_tables_are_refused_in_a_runtime_that_times_no_layers(capsys):
    code, _, err = run(capsys, "latency-table", "alexnet", "--runtime", "executorch", "--out", "t.json")
    assert code == 2 and "invalid choice: 'executorch'" in err
    assert "executorch" not in cdprune.table_runtimes() and "executorch" in cdprune.bench_runtimes()
