"""benchmarks/paper_cifar.py end to end on a tiny CIFAR-format folder, one epoch on the CPU."""
import csv
import json
import subprocess
import sys
from pathlib import Path

from cifarfiles import write_cifar10

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "paper_cifar.py"


def test_paper_grid_writes_tables_and_figures_and_resumes(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=8, test_labels=tuple(range(10)) * 2)
    argv = [sys.executable, str(SCRIPT), "--data-dir", str(tmp_path / "data"), "--models", "alexnet",
            "--datasets", "cifar10", "--modes", "fa,ma", "--targets", "0.5", "--epochs", "1", "--batch-size", "8",
            "--lr", "0.01", "--device", "cpu", "--workers", "0", "--bench-time", "0.05",
            "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "results" / "paper_cifar.json").read_text())
    assert [(p["model"], p["data"], p["method"]) for p in data["points"]] == [
        ("alexnet", "cifar10", "dense"), ("alexnet", "cifar10", "fa-0.5"), ("alexnet", "cifar10", "ma-0.5")]
    dense, fa = data["points"][0], data["points"][1]
    assert fa["flops"] <= 0.5 * dense["flops"] and data["settings"]["epochs"] == 1
    rows = list(csv.DictReader((tmp_path / "results" / "paper_cifar.csv").open()))
    assert [r["method"] for r in rows] == ["dense", "fa-0.5", "ma-0.5"]
    for name in data["figures"]:
        assert (tmp_path / "results" / name).read_bytes()[:4] == b"\x89PNG"
    assert len(data["figures"]) == 2
    weights = tmp_path / "runs" / "alexnet-cifar10" / "fa-0.5" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and weights.stat().st_mtime_ns == stamp  # resumed: nothing retrained
