"""Scaling out: data-parallel training under torchrun, and compare / sweep as Ray tasks."""
import json
import os
import subprocess
import sys

import pytest
import torch

from cdprune.backends import Resources, Task, run_tasks
from cdprune.errors import CdpruneError
from cdprune.experiment import compare, sweep
from cdprune.runs import RunSettings, eval_run
from support import run_cli

# The full synthetic set (512 images) for 3 epochs: enough for both runs to learn it.
DDP_ARGS = ["alexnet", "--data", "synthetic", "--epochs", "3", "--batch-size", "32", "--lr", "0.05", "--no-progress"]
TINY = RunSettings("alexnet", "synthetic", epochs=1, train_subset=64, test_subset=32, batch_size=32)


def _torchrun(*argv, nproc=2, env=None):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "cdprune", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_torchrun_trains_one_run_directory_like_a_single_process(tmp_path, capsys):
    """Two gloo processes each take half of every batch of the same shuffled order, so they make the
    single process's updates except for BatchNorm statistics over half-batches and the dropout masks.
    Both runs learn the synthetic set; their test accuracies (256 images) may then differ by at most
    3 points, 8 images: a wrong gradient average or a sampler that hands two ranks the same samples
    stays near the 10 % of chance after 3 epochs, or falls far short of the single process."""
    two, one = tmp_path / "two", tmp_path / "one"
    done = _torchrun("train", *DDP_ARGS, "--out", two)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run written to") == 1  # rank 0 alone reports
    torch.set_num_threads(1)  # as in each torchrun process
    try:
        code, _, err = run_cli(capsys, "train", *DDP_ARGS, "--out", one)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    assert code == 0, err

    metrics = json.loads((two / "metrics.json").read_text())
    single = json.loads((one / "metrics.json").read_text())
    assert metrics["processes"] == 2 and single["processes"] == 1
    assert sorted(p.name for p in two.iterdir()) == ["history.csv", "metrics.json", "model.safetensors", "run.json"]
    assert len((two / "history.csv").read_text().splitlines()) == 1 + 3
    assert metrics["train_size"] == single["train_size"] == 512
    assert single["test_acc"] >= 0.9
    assert abs(metrics["test_acc"] - single["test_acc"]) <= 0.03
    assert eval_run(two).matches  # rank 0's saved weights give exactly the recorded accuracy


def test_torchrun_refuses_a_batch_that_does_not_split(tmp_path):
    done = _torchrun("train", "alexnet", "--data", "synthetic", "--batch-size", "33", "--epochs", "1",
                     "--out", tmp_path / "run", "--no-progress")
    assert done.returncode != 0
    assert "batch size 33 does not split over 2 processes: use a multiple of 2" in done.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_only_train_runs_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli(capsys, "profile", "alexnet")
    assert code == 2 and "only 'cdprune train' does" in err and "--backend ray" in err


def test_backend_options_need_the_ray_backend(tmp_path, capsys):
    code, _, err = run_cli(capsys, "sweep", "--model", "alexnet", "--data", "synthetic", "--task-cpus", "2",
                           "--out", tmp_path / "s")
    assert code == 2 and "add --backend ray" in err
    assert not (tmp_path / "s").exists()


# ---- Ray ---------------------------------------------------------------------------------------

import ray  # noqa: E402  (the [distributed] extra, installed in CI)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _same_metrics(a: dict, b: dict) -> None:
    for key in ("method", "status", "test_acc", "params", "flops", "memory_bytes", "energy_mj"):
        assert a[key] == b[key], key


def test_ray_sweep_equals_the_local_sweep_and_reuses_finished_runs(tmp_path, local_ray):
    torch.set_num_threads(1)  # what each 1-CPU Ray task uses, so that both trainings do the same arithmetic
    try:
        here = sweep(tmp_path / "local", TINY, ["fa"], [0.5], progress=False, bench_time_s=0.1)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    there = sweep(tmp_path / "ray", TINY, ["fa"], [0.5], progress=False, bench_time_s=0.1, backend="ray",
                  resources=Resources(cpus=1))
    assert [p["method"] for p in there] == ["dense", "fa-0.5"]
    for a, b in zip(here, there):
        _same_metrics(a, b)
    assert (tmp_path / "ray" / "sweep.csv").read_text().count("\n") == 3

    weights = tmp_path / "ray" / "fa-0.5" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = sweep(tmp_path / "ray", TINY, ["fa"], [0.5], progress=False, bench_time_s=0.1, backend="ray")
    assert weights.stat().st_mtime_ns == stamp  # not trained again
    assert [p["test_acc"] for p in again] == [p["test_acc"] for p in there]


def test_ray_compare_runs_ranking_methods_after_their_dense_run(tmp_path, local_ray, capsys):
    code, out, err = run_cli(capsys, "compare", "--model", "alexnet", "--methods", "l1,fa", "--data", "synthetic",
                             "--epochs", "1", "--train-subset", "64", "--test-subset", "32", "--batch-size", "32",
                             "--backend", "ray", "--out", tmp_path / "cmp", "--json")
    assert code == 0, err
    summaries = {s["method"]: s for s in json.loads(out)["summaries"]}
    assert set(summaries) == {"l1", "fa"}
    dense = json.loads((tmp_path / "cmp" / "seed-0" / "dense" / "metrics.json").read_text())
    l1 = json.loads((tmp_path / "cmp" / "seed-0" / "l1" / "metrics.json").read_text())
    assert l1["pretrain_time_s"] == dense["train_time_s"] > 0  # l1 started from the finished dense run
    assert (tmp_path / "cmp" / "compare.csv").exists()


def test_ray_retries_a_failed_task_once_and_reports_the_rest(tmp_path, local_ray):
    marker = tmp_path / "failed-once"

    def flaky(x):
        if not marker.exists():
            marker.write_text("")
            raise RuntimeError("first attempt fails")
        return x * 2

    def broken(_):
        raise ValueError("always fails")

    outcome = run_tasks([Task("flaky", flaky, (21,)), Task("broken", broken, (0,)), Task("fine", abs, (-3,))],
                        "ray", progress=False)
    assert outcome.results == {"flaky": 42, "fine": 3}
    assert list(outcome.failures) == ["broken"] and "ValueError: always fails" in outcome.failures["broken"]
    with pytest.raises(CdpruneError, match=r"1 of 3 configurations failed .*broken: ValueError: always fails"):
        outcome.raise_failures()


def test_ray_refuses_tasks_bigger_than_the_cluster(local_ray):
    with pytest.raises(CdpruneError, match=r"each task needs 4 CPU\(s\) but the Ray cluster has 2: lower --task-cpus"):
        run_tasks([Task("x", abs, (1,))], "ray", Resources(cpus=4), progress=False)
