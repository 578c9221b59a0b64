import json
import subprocess
import sys

import pytest

from support import run_cli as run


def test_profile_table_has_rows_and_totals(capsys):
    code, out, _ = run(capsys, "profile", "vgg16")
    assert code == 0
    assert "features.0" in out and "classifier" in out
    total = [line for line in out.splitlines() if line.startswith("total")][0]
    assert "14.72M" in total and "313.20M" in total and "1.11MB" in total


def test_profile_json(capsys):
    code, out, _ = run(capsys, "profile", "resnet50", "--json", "--num-classes", "100")
    data = json.loads(out)
    assert code == 0 and data["model"] == "resnet50"
    assert data["layers"][-1]["out_channels"] == 100
    assert abs(sum(layer["flops_share"] for layer in data["layers"]) - 1) < 1e-9


def test_prune_prints_reductions_and_writes_plan(capsys, tmp_path):
    out_path = tmp_path / "plan.json"
    code, out, _ = run(capsys, "prune", "vgg16", "--mode", "fa", "--target", "0.5", "--out", str(out_path))
    assert code == 0
    flops = [line for line in out.splitlines() if line.startswith("FLOPs")][0]
    assert float(flops.split()[-1].rstrip("%")) >= 50.0
    plan = json.loads(out_path.read_text())
    assert plan["mode"] == "fa" and plan["reduction"]["flops"] >= 0.5 and plan["model"] == "vgg16"


def test_prune_json_matches_file(capsys, tmp_path):
    code, out, _ = run(capsys, "prune", "alexnet", "--mode", "ma", "--target", "0.4", "--seed", "3", "--json",
                       "--out", str(tmp_path / "p.json"))
    data = json.loads(out)
    saved = json.loads((tmp_path / "p.json").read_text())
    assert code == 0 and data["digest"] == saved["digest"] and data["seed"] == 3


@pytest.mark.parametrize("argv, message", [
    (["prune", "vgg99"], "unknown model 'vgg99'"),
    (["prune", "vgg16", "--mode", "xa"], "unknown mode 'xa'"),
    (["prune", "vgg16", "--target", "1.2"], "outside (0, 1)"),
    (["prune", "vgg16", "--target", "0"], "outside (0, 1)"),
    (["prune", "vgg16", "--input", "3,1"], "rejects input shape"),
    (["prune", "vgg16", "--input", "3,a,b"], "bad input shape"),
    (["prune", "alexnet", "--mode", "pa", "--target", "0.97"], "beyond reach"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, argv, message):
    out_path = tmp_path / "plan.json"
    code, _, err = run(capsys, *argv, "--out", str(out_path))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("cdprune: error:")
    assert not out_path.exists() and list(tmp_path.iterdir()) == []


def test_entry_point_exit_code_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cdprune", "prune", "alexnet", "--target", "0.99",
                             "--out", str(tmp_path / "p.json")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "at most" in result.stderr
