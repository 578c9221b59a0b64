"""Scaling out: data-parallel training under torchrun, and compare / sweep as Ray tasks."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from cdprune import distributed
from cdprune import storage
from cdprune.backends import Resources, Task, run_tasks
from cdprune.errors import CdpruneError
from cdprune.experiment import SweepPoint, sweep
from cdprune.runs import eval_run
from cdprune.train import TrainConfig, train
from support import TINY_SETTINGS, run_cli

# The full synthetic set (512 images) for 3 epochs: enough for both runs to learn it (lr 0.2 at batch 128 is a
# peak of 0.05 at batch 32).
DDP_ARGS = ["alexnet", "--data", "synthetic", "--epochs", "3", "--batch-size", "32", "--lr", "0.2", "--no-progress"]
TINY = TINY_SETTINGS


def _torchrun(*argv, nproc=2, env=None, entry=("-m", "cdprune")):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               *entry, *map(str, argv)]
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
    # Hidden files are the directory lock.
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == [
        "history.csv", "metrics.json", "model.safetensors", "run.json"]
    assert len((two / "history.csv").read_text().splitlines()) == 1 + 3
    assert metrics["train_size"] == single["train_size"] == 512
    assert single["test_acc"] >= 0.9
    assert abs(metrics["test_acc"] - single["test_acc"]) <= 0.03
    assert eval_run(two).matches  # rank 0's saved weights give exactly the recorded accuracy


def _quadrants(n: int, seed: int) -> TensorDataset:
    """1x8x8 noise with one brightened quadrant, labelled by the quadrant (4 classes)."""
    g = torch.Generator().manual_seed(seed)
    x, y = 0.5 * torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.5
    return TensorDataset(x, y)


def _train_plain_cnn(out, seed: int = 0):
    """A CNN without BatchNorm or dropout, on data without augmentation: nothing in its training
    depends on how a batch is split over processes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    config = TrainConfig(epochs=2, batch_size=32, lr=0.2, seed=seed, device="cpu", progress=False)
    return train(model, _quadrants(256, 1), _quadrants(64, 2), config, out)


def test_two_ranks_make_the_single_process_updates(tmp_path):
    """With nothing split-dependent in the model, 2 ranks averaging their half-batch gradients take
    the single process's SGD steps, provided that at every step their local batches together are the
    single process's batch. Their losses then agree up to float rounding; a shuffle
    that differs from the single process's, or a rank left with another rank's samples, moves them
    by far more (another seed: about 10 %)."""
    done = _torchrun(tmp_path / "two", entry=(__file__,))
    assert done.returncode == 0, done.stderr[-2000:]
    torch.set_num_threads(1)  # as in each torchrun process
    try:
        single = _train_plain_cnn(tmp_path / "one").history
        reshuffled = _train_plain_cnn(tmp_path / "other", seed=1).history
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    two = storage.read_checkpoint_meta(tmp_path / "two" / "checkpoint.safetensors")["history"]
    assert [r["epoch"] for r in two] == [1, 2]
    for a, b in zip(two, single):
        assert a["train_loss"] == pytest.approx(b.train_loss, rel=1e-4)
        assert a["test_loss"] == pytest.approx(b.test_loss, rel=1e-4)
        assert a["train_acc"] == pytest.approx(b.train_acc, abs=1 / 256)  # a near-tie may round either way
    # The tolerance tells a different shuffle apart: another seed's losses fall well outside it.
    assert reshuffled[-1].test_loss != pytest.approx(single[-1].test_loss, rel=1e-2)


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


# ---- Task order ----------------------------------------------------------------------------------
# Module-level task functions, as run_tasks requires of real tasks. Each appends
# "NAME start|end TIME" to a log shared by all processes of this machine.

def _log_run(log, name, seconds=0.0):
    with open(log, "a") as f:
        f.write(f"{name} start {time.time()!r}\n")
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"{name} end {time.time()!r}\n")
    return name


def _fail_first_time(log, name, marker, seconds=0.0):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return _log_run(log, name, seconds)


def _always_fail(log, name):
    raise ValueError("always fails")


def _events(log) -> dict[tuple[str, str], float]:
    """(task name, "start" or "end") -> when; each task here logs one successful run at most."""
    events = {}
    for line in log.read_text().splitlines():
        name, event, when = line.split()
        assert (name, event) not in events, f"{name} ran twice"
        events[name, event] = float(when)
    return events


def test_local_backend_runs_a_task_after_its_dependency_whatever_the_list_order(tmp_path):
    log = tmp_path / "log"
    tasks = [Task("l1", _log_run, (log, "l1"), after="dense"), Task("fa", _log_run, (log, "fa")),
             Task("dense", _log_run, (log, "dense")), Task("tp", _log_run, (log, "tp"), after="dense")]
    outcome = run_tasks(tasks, "local", progress=False)
    assert list(outcome.results) == ["l1", "fa", "dense", "tp"]  # by name, in the caller's order
    assert outcome.results == {name: name for name in outcome.results} and outcome.failures == {}
    started = [line.split()[0] for line in log.read_text().splitlines() if " start " in line]
    assert started == ["fa", "dense", "l1", "tp"]  # the dependency moved up; the rest keep their order


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_unknown_or_circular_dependencies_are_refused_before_anything_runs(tmp_path, backend):
    log = tmp_path / "log"
    with pytest.raises(CdpruneError, match=r"task 'l1' waits for 'dens', which is not among the tasks: add that"):
        run_tasks([Task("dense", _log_run, (log, "dense")), Task("l1", _log_run, (log, "l1"), after="dens")],
                  backend, progress=False)
    circular = [Task("fa", _log_run, (log, "fa")), Task("a", _log_run, (log, "a"), after="c"),
                Task("b", _log_run, (log, "b"), after="a"), Task("c", _log_run, (log, "c"), after="b")]
    with pytest.raises(CdpruneError, match=r"tasks wait for each other in a cycle \(a -> c -> b -> a\): break"):
        run_tasks(circular, backend, progress=False)
    with pytest.raises(CdpruneError, match=r"in a cycle \(x -> x\)"):
        run_tasks([Task("x", _log_run, (log, "x"), after="x")], backend, progress=False)
    assert not log.exists()


# ---- Ray ---------------------------------------------------------------------------------------

import ray  # noqa: E402  (the [distributed] extra, installed in CI)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray workers cannot import this test module (tests/ is not on their path): ship its task
    # functions by value, as Ray does for closures.
    this_module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(this_module)
    yield
    ray.cloudpickle.unregister_pickle_by_value(this_module)
    ray.shutdown()


def _same_metrics(a: SweepPoint, b: SweepPoint) -> None:
    for key in ("method", "status", "test_acc", "params", "flops", "memory_bytes", "energy_mj"):
        assert getattr(a, key) == getattr(b, key), key


def test_ray_sweep_equals_the_local_sweep_and_reuses_finished_runs(tmp_path, local_ray):
    torch.set_num_threads(1)  # what each 1-CPU Ray task uses, so that both trainings do the same arithmetic
    try:
        here = sweep(tmp_path / "local", TINY, ["fa"], [0.5], progress=False, bench_time_s=0.1)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    there = sweep(tmp_path / "ray", TINY, ["fa"], [0.5], progress=False, bench_time_s=0.1, backend="ray",
                  resources=Resources(cpus=1))
    assert [p.method for p in there.points] == ["dense", "fa-0.5"]
    for a, b in zip(here.points, there.points):
        _same_metrics(a, b)
    assert (tmp_path / "ray" / "sweep.csv").read_text().count("\n") == 3

    weights = tmp_path / "ray" / "fa-0.5" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = sweep(tmp_path / "ray", TINY, ["fa"], [0.5], progress=False, bench_time_s=0.1, backend="ray")
    assert weights.stat().st_mtime_ns == stamp  # not trained again
    assert [p.test_acc for p in again.points] == [p.test_acc for p in there.points]


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


def test_ray_runs_a_task_after_its_dependency_listed_later(tmp_path, local_ray):
    """With 2 CPUs, both tasks would run at once if the dependency were not honoured."""
    log = tmp_path / "log"
    tasks = [Task("l1", _log_run, (log, "l1"), after="dense"), Task("dense", _log_run, (log, "dense", 1.0))]
    outcome = run_tasks(tasks, "ray", progress=False)
    assert outcome.results == {"l1": "l1", "dense": "dense"} and outcome.failures == {}
    events = _events(log)
    assert events["dense", "end"] <= events["l1", "start"]


def test_ray_dependents_wait_for_a_retried_task_and_skip_a_failed_one(tmp_path, local_ray):
    log, marker = tmp_path / "log", tmp_path / "failed-once"
    tasks = [Task("a", _log_run, (log, "a"), after="a-dense"), Task("b", _log_run, (log, "b"), after="b-dense"),
             Task("a-dense", _fail_first_time, (log, "a-dense", marker, 0.5)),
             Task("b-dense", _always_fail, (log, "b-dense"))]
    outcome = run_tasks(tasks, "ray", progress=False)
    assert outcome.results == {"a-dense": "a-dense", "a": "a"}
    events = _events(log)
    assert events["a-dense", "end"] <= events["a", "start"]  # the retry's end, the only logged attempt
    assert "ValueError: always fails" in outcome.failures["b-dense"]
    assert outcome.failures["b"] == "not run: b-dense failed" and ("b", "start") not in events
    with pytest.raises(CdpruneError, match=r"2 of 4 configurations failed .*b: not run: b-dense failed"):
        outcome.raise_failures()


def test_ray_refuses_tasks_bigger_than_the_cluster(local_ray):
    with pytest.raises(CdpruneError, match=r"each task needs 4 CPU\(s\) but the Ray cluster has 2: lower --task-cpus"):
        run_tasks([Task("x", abs, (1,))], "ray", Resources(cpus=4), progress=False)


# The entry point torchrun starts in each rank for test_two_ranks_make_the_single_process_updates.
if __name__ == "__main__":
    torch.set_num_threads(1)
    try:
        _train_plain_cnn(sys.argv[1])
    finally:
        distributed.shutdown()
