"""The task registry: a task defined and registered here alone trains, records and reports through the public
API, and a name registered twice warns."""
import csv
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import cdprune
from cdprune import RunSettings, tasks
from cdprune.tasks import Classify, Score, register_task
from support import run_cli

TOP2 = Score("top-2 accuracy", "top2", unit="%", scale=100.0, delta_unit="pt")
SMOOTHING = 0.1


class TopTwo(Classify):
    """A classifier trained on label-smoothed cross-entropy and scored by top-2 accuracy."""

    name = "top2"
    title = "classification scored by top-2 accuracy"
    losses = ("smoothed-cross-entropy",)
    score = TOP2
    named_in_titles = True
    scores_exports = False

    def loss_of(self, output, target, reduction="mean"):
        self._check_batch(output, target)
        return F.cross_entropy(output.float(), target, reduction=reduction, label_smoothing=SMOOTHING)

    def score_sum(self, output, target):
        return (output.topk(2, dim=1).indices == target[:, None]).any(1).sum()


@pytest.fixture(scope="module", autouse=True)
def top2_registered():
    """The one registration a new task needs; taken out after this module, so that other tests (the CLI's
    --task choices in docs/cli.md) see the built-in tasks alone."""
    register_task(TopTwo)
    yield
    del tasks._registry._TASKS[TopTwo.name]


SETTINGS = RunSettings("alexnet", "synthetic", epochs=2, train_subset=64, test_subset=32, batch_size=32, task="top2")


@pytest.fixture(scope="module")
def top2_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("top2") / "run"
    cdprune.train_run(out, SETTINGS, progress=False)
    return out


def by_hand(run_dir):
    """(top-1, top-2 accuracy, mean label-smoothed cross-entropy) of the trained model, counted here: a label is
    in the top 2 when fewer than 2 classes score above it."""
    model, _ = cdprune.load_run(run_dir)
    test_set, _ = cdprune.runs.run_data(run_dir, "test")
    model.eval()
    top1 = top2 = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in DataLoader(test_set, batch_size=8):
            logits = model(x).double()
            above = (logits > logits.gather(1, y[:, None])).sum(1)
            top1 += int((above == 0).sum())
            top2 += int((above < 2).sum())
            log_p = logits.log_softmax(1)
            loss -= float(((1 - SMOOTHING) * log_p.gather(1, y[:, None])[:, 0] + SMOOTHING * log_p.mean(1)).sum())
    n = len(test_set)
    return top1 / n, top2 / n, loss / n


def test_a_task_registered_in_one_file_trains_records_and_reports(top2_run, capsys):
    metrics = json.loads((top2_run / "metrics.json").read_text())
    assert metrics["task"] == "top2" and metrics["score_name"] == "top-2 accuracy"
    assert metrics["test_acc"] is None  # the score is not the plain accuracy
    assert metrics["settings"]["lr"] == 0.05  # the optimiser default it inherits from classify
    with open(top2_run / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "lr", "train_loss", "train_top2", "test_loss", "test_top2", "train_time_s",
                       "epoch_time_s"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2] and float(rows[-1][5]) == metrics["score"]

    top1, top2, loss = by_hand(top2_run)
    assert metrics["score"] == pytest.approx(top2, abs=1 / 32)  # a near-tie may order either way
    assert top2 >= top1 and top2 > 0.2  # chance is 2 in 10
    assert float(rows[-1][4]) == pytest.approx(loss, rel=1e-4)  # the task's own loss was taken

    text = cdprune.report.run_text(cdprune.runs.read_metrics(top2_run))
    assert ["test", "top-2", "accuracy", f"{100 * metrics['score']:.2f}%"] in [line.split() for line in text.splitlines()]
    code, out, err = run_cli(capsys, "eval", top2_run)
    assert code == 0 and f"test top-2 accuracy {100 * metrics['score']:.2f}% on 32 images" in out, err
    assert "matches the record" in out


def test_the_registered_task_is_a_choice_of_the_cli_and_its_settings_are_checked(tmp_path, capsys):
    assert tasks.list_tasks()[:3] == ["classify", "denoise", "sr"] and "top2" in tasks.list_tasks()
    with pytest.raises(cdprune.CdpruneError, match="noise .--noise. applies to task denoise, not top2"):
        tasks.create("top2", noise=10)
    code, _, err = run_cli(capsys, "train", "alexnet", "--task", "top2", "--loss", "mse", "--data", "synthetic",
                           "--out", tmp_path / "r", "--no-progress")
    assert code == 2 and "loss (--loss) 'mse' does not apply to task top2" in err and "choose --task denoise or sr" in err
    assert not (tmp_path / "r").exists()


def test_a_name_registered_twice_warns_and_the_later_class_serves():
    class Again(TopTwo):
        pass

    with pytest.warns(UserWarning, match="task 'top2' is registered twice: .*Again replaces .*TopTwo"):
        register_task(Again)
    try:
        assert type(tasks.create("top2")) is Again
    finally:
        with pytest.warns(UserWarning, match="registered twice"):
            register_task(TopTwo)
    assert type(tasks.create("top2")) is TopTwo
