"""Training runs through the CLI: train, eval, run, resume, and the errors around them."""
import json

import pytest
import torch

import cdprune
from cdprune import data
from cdprune.cli import main
from cdprune.storage import load_weights
from cdprune.runs import RunSettings, eval_run, train_run
from cdprune.train import TrainConfig, evaluate, train
from support import TINY_TRAIN, ctrl_c_in_epoch, run_cli as run

TINY = TINY_TRAIN


@pytest.fixture(scope="module")
def pruned_run_dir(tmp_path_factory):
    """alexnet pruned FA-0.5 and trained for one epoch on synthetic data, through the CLI."""
    root = tmp_path_factory.mktemp("pruned")
    assert main(["prune", "alexnet", "--mode", "fa", "--target", "0.5", "--out", str(root / "plan.json")]) == 0
    assert main(["train", "alexnet", "--plan", str(root / "plan.json"), "--out", str(root / "run"), *TINY]) == 0
    return root


def test_train_writes_the_run_directory(pruned_run_dir):
    run_dir = pruned_run_dir / "run"
    # Hidden files are the directory lock (docs/design.md, "File formats").
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == ["history.csv", "metrics.json", "model.safetensors",
                                                         "plan.json", "run.json"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    plan = cdprune.PruningPlan.load(run_dir / "plan.json")
    assert metrics["method"] == "fa-0.5" and metrics["flops"] == plan.after.flops
    assert metrics["reduction"]["flops"] >= 0.5
    assert metrics["latency_ms"] > 0 and metrics["energy"]["kind"] == "estimated"
    assert metrics["train_size"] == 64 and metrics["test_size"] == 32
    weights = load_weights(run_dir / "model.safetensors")
    assert weights["features.0.weight"].shape[0] == len(plan.units[0].kept)


def test_eval_reproduces_the_recorded_accuracy(pruned_run_dir, capsys):
    code, out, _ = run(capsys, "eval", pruned_run_dir / "run", "--json")
    result = json.loads(out)
    assert code == 0 and result["matches"] and result["test_acc"] == result["recorded_acc"]


def test_finished_run_is_not_overwritten(pruned_run_dir, capsys):
    before = (pruned_run_dir / "run" / "model.safetensors").read_bytes()
    code, _, err = run(capsys, "train", "alexnet", "--plan", pruned_run_dir / "plan.json", "--out",
                       pruned_run_dir / "run", *TINY)
    assert code == 2 and "already holds a finished run" in err
    assert (pruned_run_dir / "run" / "model.safetensors").read_bytes() == before


def test_plan_for_other_input_or_model_is_refused(pruned_run_dir, tmp_path, capsys):
    code, _, err = run(capsys, "train", "alexnet", "--plan", pruned_run_dir / "plan.json", "--out", tmp_path / "r",
                       "--data", "fashion-mnist", "--no-progress")
    assert code == 2 and "--input 1,28,28" in err and not (tmp_path / "r").exists()
    code, _, err = run(capsys, "train", "vgg16", "--plan", pruned_run_dir / "plan.json", "--out", tmp_path / "r",
                       *TINY)
    assert code == 2 and "made for alexnet, not vgg16" in err and not (tmp_path / "r").exists()


def test_tampered_plan_is_refused_before_anything_is_written(pruned_run_dir, tmp_path, capsys):
    text = (pruned_run_dir / "plan.json").read_text().replace('"target": 0.5', '"target": 0.4')
    (tmp_path / "plan.json").write_text(text)
    code, _, err = run(capsys, "train", "alexnet", "--plan", tmp_path / "plan.json", "--out", tmp_path / "r", *TINY)
    assert code == 2 and "edited or damaged" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_weights_from_another_run_are_refused(pruned_run_dir, tmp_path):
    dense = tmp_path / "dense"
    train_run(dense, RunSettings("alexnet", "synthetic", epochs=1, train_subset=40, test_subset=20), progress=False)
    (dense / "plan.json").write_bytes((pruned_run_dir / "run" / "plan.json").read_bytes())
    with pytest.raises(cdprune.CdpruneError, match="does not fit"):
        eval_run(dense)


def test_interrupted_cli_run_resumes_to_the_same_weights(tmp_path, capsys):
    argv = ["train", "alexnet", "--data", "synthetic", "--epochs", "2", "--train-subset", "64", "--test-subset", "20",
            "--batch-size", "32", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "straight")]) == 0

    with ctrl_c_in_epoch(2):
        code, _, err = run(capsys, *argv, "--out", tmp_path / "broken")
    assert code == 130 and "--resume" in err
    code, _, err = run(capsys, *argv, "--out", tmp_path / "broken")
    assert code == 2 and "interrupted run" in err
    assert main(argv + ["--out", str(tmp_path / "broken"), "--resume"]) == 0

    a = load_weights(tmp_path / "straight" / "model.safetensors")
    b = load_weights(tmp_path / "broken" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_main_job_table_report_chart_and_reuse(tmp_path, capsys):
    out = tmp_path / "job"
    code, text, _ = run(capsys, "run", "--model", "alexnet", "--out", out, *TINY)
    assert code == 0
    assert "dense" in text and "fa-0.5 / dense" in text and "training wall time" in text
    flops = [line for line in text.splitlines() if line.startswith("FLOPs")][0]
    assert float(flops.split()[-1].rstrip("×")) <= 0.5
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| test accuracy |" in (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in summary["runs"]] == ["dense", "fa-0.5"]

    weights = (out / "dense" / "model.safetensors").stat().st_mtime_ns
    assert main(["run", "--model", "alexnet", "--out", str(out), *TINY]) == 0  # finished runs are reused
    assert (out / "dense" / "model.safetensors").stat().st_mtime_ns == weights
    code, _, err = run(capsys, "run", "--model", "alexnet", "--out", out, *TINY[:-1], "--lr", "0.1", "--no-progress")
    assert code == 2 and "other settings" in err


def test_missing_fashion_mnist_names_the_install_command(tmp_path, capsys, monkeypatch):
    from cdprune.data import idx

    monkeypatch.setattr(idx, "SYSTEM_DIRS", {"fashion-mnist": tmp_path / "nowhere"})
    code, _, err = run(capsys, "run", "--out", tmp_path / "job", "--no-progress")
    assert code == 2 and "apt-get install -y dataset-fashion-mnist" in err
    assert not (tmp_path / "job").exists()


def small_cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 10))


def test_user_module_pruned_and_trained_on_real_fashion_mnist(tmp_path):
    """A few hundred real images, one epoch: far above the 10 % of chance."""
    train_set = data.load_dataset("fashion-mnist", "train", subset=600, seed=0)
    test_set = data.load_dataset("fashion-mnist", "test", subset=500, seed=0)
    torch.manual_seed(0)
    plan = cdprune.make_plan(small_cnn(), (1, 28, 28), "fa", 0.3, seed=0)
    model = cdprune.apply_plan(small_cnn(), plan)
    result = train(model, train_set, test_set, TrainConfig(epochs=1, batch_size=16, lr=0.02, progress=False), tmp_path)
    assert result.test_acc > 0.5
    assert evaluate(model, test_set, channels_last=True)[1] == pytest.approx(result.test_acc)


def test_main_job_estimates_its_time_before_training(tmp_path, capsys):
    argv = ["run", "--model", "alexnet", "--out", tmp_path / "job", *[a for a in TINY if a != "--no-progress"]]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert "estimated training time on this CPU: about" in err and "dense" in err.split("probe:")[1]
    assert err.index("estimated training time") < err.index("dense: training")
    code, _, err = run(capsys, *argv)  # both runs are reused: nothing left to estimate
    assert code == 0 and "estimated" not in err and "finished, reused" in err


def test_the_estimate_probes_restoration_models_too(tmp_path, capsys):
    argv = ["run", "--model", "dncnn", "--model-args", '{"depth": 3, "width": 8}', "--task", "denoise",
            "--out", tmp_path / "job", *[a for a in TINY if a != "--no-progress"]]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert "estimated training time on this CPU: about" in err
