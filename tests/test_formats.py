"""The export-format and runtime tables: a new format is one registration, and every refusal comes from its row."""
import dataclasses
import warnings

import pytest
import torch
from safetensors.torch import load_file, save

import cdprune
from cdprune.runs import load_run
from support import run_cli as run


def weights_only(model, input_shape, *, precision, metadata, output, images) -> bytes:
    """A toy exporter: the model's tensors as a safetensors file (no graph, no metadata)."""
    return save({name: tensor.contiguous() for name, tensor in model.state_dict().items()})


@pytest.fixture
def toy_format():
    fmt = cdprune.register_format(cdprune.ExportFormat("toy", "safetensors weights", ".toy.safetensors",
                                                       weights_only))
    yield fmt
    del cdprune.FORMATS["toy"]


def assert_holds_the_run_weights(path, run_dir):
    written, (model, _) = load_file(str(path)), load_run(run_dir)
    expected = model.state_dict()
    assert set(written) == set(expected) and len(written) > 0
    for name, tensor in expected.items():
        assert written[name].dtype == tensor.dtype and torch.equal(written[name], tensor), name
    assert written["features.0.weight"].dtype == torch.float32


def test_a_registered_format_exports_through_the_api(toy_format, pruned_run):
    path = pruned_run / "model.toy.safetensors"
    try:
        result = cdprune.export_run(pruned_run, "toy")
        assert result.path == str(path) and result.format == "toy" and result.precision == "fp32"
        assert result.bytes == path.stat().st_size and result.opset is None and result.metadata == {}
        assert_holds_the_run_weights(path, pruned_run)
    finally:
        path.unlink(missing_ok=True)


def test_a_registered_format_is_a_cli_choice(toy_format, pruned_run, tmp_path, capsys):
    code, out, err = run(capsys, "export", pruned_run, "--format", "toy", "--out", tmp_path / "w.safetensors")
    assert code == 0 and err == "" and str(tmp_path / "w.safetensors") in out
    assert_holds_the_run_weights(tmp_path / "w.safetensors", pruned_run)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # written atomically: no temporary left


def test_a_precision_the_row_lacks_is_one_line_and_writes_nothing(toy_format, pruned_run, tmp_path, capsys):
    code, _, err = run(capsys, "export", pruned_run, "--format", "toy", "--int8", "--out", tmp_path / "w.safetensors")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("int8 models are written as ONNX, ORT, ExecuTorch or LiteRT: use --format onnx, ort, pte or tflite "
            "with --int8") in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(cdprune.CdpruneError, match="int8 models are written as ONNX"):
        cdprune.export_run(pruned_run, "toy", tmp_path / "w.safetensors", int8=True)
    assert list(tmp_path.iterdir()) == []


def test_a_second_int8_format_is_named_in_the_refusal(toy_format, pruned_run, tmp_path, capsys):
    row = cdprune.FORMATS["onnx"]
    int8_twin = cdprune.ExportFormat("onnx-twin", "ONNX twin", ".twin.onnx", row.export, runtime="onnxruntime",
                                     precisions=("fp32", "int8"))
    cdprune.register_format(int8_twin)
    try:
        code, _, err = run(capsys, "export", pruned_run, "--format", "toy", "--int8", "--out", tmp_path / "w")
    finally:
        del cdprune.FORMATS["onnx-twin"]
    assert code == 2
    assert ("int8 models are written as ONNX, ORT, ExecuTorch, LiteRT or ONNX twin: use --format onnx, ort, pte, "
            "tflite or onnx-twin with --int8") in err
    assert list(tmp_path.iterdir()) == []


def test_export_formats_lists_every_row(toy_format):
    rows = {row["name"]: row for row in cdprune.export_formats()}
    assert rows["onnx"] == {"name": "onnx", "title": "ONNX", "suffix": ".onnx", "runtime": "onnxruntime",
                            "precisions": ["fp32", "int8"], "bench": True, "eval": True, "latency_table": True}
    assert (rows["torchscript"]["suffix"], rows["torchscript"]["precisions"], rows["torchscript"]["bench"]) == \
        (".pt", ["fp32"], False)
    assert rows["toy"] == {"name": "toy", "title": "safetensors weights", "suffix": ".toy.safetensors",
                           "runtime": None, "precisions": ["fp32"], "bench": False, "eval": False,
                           "latency_table": False}


def test_registering_a_name_again_warns_and_replaces(toy_format):
    again = cdprune.ExportFormat("toy", "toy again", ".again", weights_only)
    with pytest.warns(UserWarning, match="export format 'toy' is registered twice"):
        cdprune.register_format(again)
    assert cdprune.FORMATS["toy"] is again
    runtime = cdprune.RUNTIMES["onnxruntime"]
    twin = dataclasses.replace(runtime)
    try:
        with pytest.warns(UserWarning, match="runtime 'onnxruntime' is registered twice"):
            cdprune.register_runtime(twin)
        assert cdprune.RUNTIMES["onnxruntime"] is twin
    finally:
        cdprune.RUNTIMES["onnxruntime"] = runtime
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cdprune.register_runtime(runtime)  # the same row again changes nothing and says nothing


def test_a_new_format_registers_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cdprune.register_format(cdprune.ExportFormat("toy-quiet", "toy", ".quiet", weights_only))
    del cdprune.FORMATS["toy-quiet"]


def test_a_row_that_cannot_load_its_files_is_refused():
    with pytest.raises(cdprune.CdpruneError, match="names no runtime, so bench and eval cannot load its files"):
        cdprune.register_format(cdprune.ExportFormat("toy-bench", "toy", ".tb", weights_only, bench=True))
    with pytest.raises(cdprune.CdpruneError, match="runtime 'torch' loads no files"):
        cdprune.register_format(cdprune.ExportFormat("toy-int8", "toy", ".ti", weights_only, runtime="torch",
                                                     precisions=("fp32", "int8")))
    assert "toy-bench" not in cdprune.FORMATS and "toy-int8" not in cdprune.FORMATS


def test_a_runtime_without_layer_timing_makes_no_latency_table(capsys):
    onnxruntime = cdprune.RUNTIMES["onnxruntime"]
    cdprune.register_runtime(cdprune.Runtime("toyrt", "Toy RT", ("onnxruntime",), load=onnxruntime.load))
    try:
        assert "toyrt" not in cdprune.table_runtimes() and "toyrt" not in cdprune.bench_runtimes()
        with pytest.raises(cdprune.CdpruneError, match="runtime 'toyrt' cannot time per-layer latency tables: "
                                                       "choose one of torch, onnxruntime"):
            cdprune.build_latency_table(cdprune.models.create("alexnet"), (3, 32, 32), "toyrt", 1)
        code, _, err = run(capsys, "bench", "alexnet", "--runtime", "toyrt")
        assert code == 2 and "invalid choice: 'toyrt'" in err
    finally:
        del cdprune.RUNTIMES["toyrt"]


def test_eval_refuses_a_file_of_a_format_it_cannot_test(pruned_run, tmp_path, capsys):
    cdprune.export_run(pruned_run, "torchscript", tmp_path / "m.pt")
    code, _, err = run(capsys, "eval", pruned_run, "--onnx", tmp_path / "m.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("m.pt is not a file eval can test: it tests ONNX (.onnx), ORT (.ort), ExecuTorch (.pte) or LiteRT "
            "(.tflite) files written by 'cdprune export'") in err


def test_bench_int8_in_a_runtime_without_an_int8_format_names_the_one_that_has(capsys):
    code, _, err = run(capsys, "bench", "alexnet", "--runtime", "torch", "--int8")
    assert code == 2 and ("int8 models run in ONNX Runtime, ExecuTorch or LiteRT: add --runtime onnxruntime, executorch "
                          "or litert to --int8") in err
