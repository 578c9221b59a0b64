"""The training recipe: per-step warm-up and cosine, LR scaled with the batch, label smoothing, no weight decay on
BN parameters and biases, the few-steps warning and the convergence flag. Figures are checked against hand values."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

import cdprune
from cdprune import RunSettings, report, storage, tasks
from cdprune.errors import CdpruneError
from cdprune.experiment import MethodSummary
from cdprune.runs import read_metrics
from cdprune.train import (
    EpochRecord,
    TrainConfig,
    convergence,
    lr_factor,
    parameter_groups,
    steps_per_epoch,
    train,
    warmup_steps,
)
from support import (QUADRANTS_TEST, QUADRANTS_TRAIN, TINY_TRAIN, InterruptingDataset, run_cli,
                     straight_and_resumed, tiny_cnn)
from support import one_thread  # noqa: F401 (an autouse fixture)


TRAIN_XY, TEST_SET = QUADRANTS_TRAIN, QUADRANTS_TEST
# 256 images at batch 32: 8 steps per epoch, 24 in all.
CONFIG = TrainConfig(epochs=3, batch_size=32, lr=0.05, device="cpu", progress=False, warmup=0.25)


# ---- the schedule ------------------------------------------------------------------------------------------------

def test_lr_factor_at_chosen_steps():
    # 100 steps, 10 of warm-up: (k + 1) / 10 while warming up, then 0.5 (1 + cos(pi (k - 10) / 90)).
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(4, 100, 10) == pytest.approx(0.5)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)  # the warm-up's last step is at the peak
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)  # the cosine starts there
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_factor(99, 100, 10) == pytest.approx(0.5 * (1 - math.cos(math.pi / 90)))  # 3.046e-4
    assert lr_factor(99, 100, 10) == pytest.approx(3.0459e-4, rel=1e-3)
    # Without warm-up the cosine starts at the peak on step 0.
    assert lr_factor(0, 100, 0) == 1.0
    assert lr_factor(50, 100, 0) == pytest.approx(0.5)


def test_warmup_and_steps_counts():
    assert steps_per_epoch(256, 32) == 8
    assert steps_per_epoch(257, 32) == 8  # a last batch of one image is dropped
    assert steps_per_epoch(600, 128) == 5
    assert warmup_steps(0.1, 300) == 30
    assert warmup_steps(0.0, 300) == 0


def test_training_steps_the_lr_every_optimiser_step(tmp_path):
    """history.csv's lr is the LR of each epoch's first step: 6 warm-up steps of 24, then the cosine over 18."""
    result = train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, CONFIG, tmp_path)
    lrs = [r.lr for r in result.history]
    assert lrs[0] == pytest.approx(0.05 / 6)  # step 0: 1/6 of the peak
    assert lrs[1] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 2 / 18)))  # step 8
    assert lrs[2] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 10 / 18)))  # step 16
    # A per-epoch schedule would hold the LR for a whole epoch: the checkpoint's scheduler counted every step.
    meta = storage.read_checkpoint_meta(tmp_path / "checkpoint.safetensors")
    assert meta["scheduler"]["last_epoch"] == 24
    assert meta["run"]["warmup"] == 0.25 and meta["run"]["label_smoothing"] == 0.0


def test_resume_in_the_middle_of_the_warm_up_is_bit_identical(tmp_path):
    """Half the steps are warm-up (12 of 24): Ctrl-C in epoch 2 leaves a checkpoint at step 8, inside it."""
    config = replace(CONFIG, warmup=0.5)
    straight, expected, resumed, result = straight_and_resumed(config, tmp_path)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert [r.lr for r in result.history] == [r.lr for r in expected.history]
    assert result.history[1].lr == pytest.approx(0.05 * 9 / 12)  # step 8 of a 12-step warm-up


def test_resume_with_another_warmup_is_refused(tmp_path):
    train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(CONFIG, epochs=1), tmp_path)
    with pytest.raises(CdpruneError, match="warmup="):
        train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(CONFIG, epochs=1, warmup=0.1), tmp_path,
              resume=True)


# ---- the LR and the batch ----------------------------------------------------------------------------------------

def test_lr_is_given_at_batch_128_and_scaled_with_the_batch():
    assert RunSettings("alexnet", "synthetic").effective_lr == pytest.approx(0.05)  # batch 128: as given
    assert RunSettings("alexnet", "synthetic", batch_size=32, lr=0.08).effective_lr == pytest.approx(0.02)
    assert RunSettings("alexnet", "synthetic", batch_size=512, lr=0.1).effective_lr == pytest.approx(0.4)
    # Adam (denoise, sr) scales by the square root: 0.001 × sqrt(32 / 128) = 0.0005.
    assert RunSettings("dncnn", "synthetic", task="denoise", batch_size=32).effective_lr == pytest.approx(0.0005)
    assert tasks.create("sr").scaled_lr(0.002, 512) == pytest.approx(0.004)


# ---- weight decay ------------------------------------------------------------------------------------------------

def test_no_weight_decay_on_bn_parameters_and_biases():
    model = tiny_cnn(0)
    config = TrainConfig(weight_decay=5e-4)
    for task in (tasks.create("classify"), tasks.create("denoise")):  # SGD and Adam
        optimizer = task.make_optimizer(parameter_groups(model, config.weight_decay), config)
        decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
        conv, bn, linear = model[0], model[1], model[5]
        assert decay[id(conv.weight)] == 5e-4 and decay[id(linear.weight)] == 5e-4
        for p in (conv.bias, bn.weight, bn.bias, linear.bias):
            assert decay[id(p)] == 0.0
        assert len(decay) == len(list(model.parameters()))  # every parameter is trained


def test_a_bias_free_model_gets_one_group():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False))
    assert [g["weight_decay"] for g in parameter_groups(model, 1e-4)] == [1e-4]


# ---- label smoothing ---------------------------------------------------------------------------------------------

def test_label_smoothing_loss_by_hand():
    # Logits (2, 1, 0), true class 0, smoothing 0.3 over 3 classes: target (0.8, 0.1, 0.1).
    # log-softmax = logits - log(e² + e + 1) = (-0.407606, -1.407606, -2.407606); loss = 0.707606.
    logits, label = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0])
    classify = tasks.create("classify")
    assert classify.training_loss(logits, label, 0.3).item() == pytest.approx(0.707606, abs=1e-6)
    assert classify.training_loss(logits, label, 0.0).item() == pytest.approx(0.407606, abs=1e-6)
    assert classify.loss_of(logits, label).item() == pytest.approx(0.407606, abs=1e-6)  # tests are never smoothed


def test_label_smoothing_defaults_and_refusals(tmp_path, capsys):
    assert RunSettings("alexnet", "synthetic").label_smoothing == 0.1
    assert RunSettings("dncnn", "synthetic", task="denoise").label_smoothing == 0.0
    with pytest.raises(CdpruneError, match="label smoothing.*denoise"):
        RunSettings("dncnn", "synthetic", task="denoise", label_smoothing=0.1).check()
    with pytest.raises(CdpruneError, match="label smoothing must be in"):
        RunSettings("alexnet", "synthetic", label_smoothing=1.0).check()
    code, _, err = run_cli(capsys, "train", "dncnn", "--task", "denoise", *TINY_TRAIN, "--label-smoothing", "0.1",
                           "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--label-smoothing 0" in err
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli(capsys, "train", "alexnet", *TINY_TRAIN, "--warmup", "1", "--out", tmp_path / "run")
    assert code == 2 and "warmup" in err and not (tmp_path / "run").exists()


# ---- the few-steps warning ---------------------------------------------------------------------------------------

def test_an_epoch_of_few_steps_warns_and_names_the_fix(tmp_path, capsys):
    # 64 images at batch 32: 2 optimiser steps per epoch.
    code, _, err = run_cli(capsys, "train", "alexnet", *TINY_TRAIN, "--out", tmp_path / "run")
    assert code == 0
    assert "warning" in err and "2 optimiser steps" in err and "--batch-size (3 or less" in err


def test_an_epoch_of_enough_steps_does_not_warn(tmp_path, capsys):
    train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(CONFIG, epochs=1, batch_size=8), tmp_path)
    assert "warning" not in capsys.readouterr().err  # 32 steps


# ---- convergence -------------------------------------------------------------------------------------------------

def history(key: str, *scores: float) -> list[EpochRecord]:
    return [EpochRecord(i + 1, 0.1, 1.0, 1.0, 0.0, 0.0, {f"test_{key}": s}) for i, s in enumerate(scores)]


def test_convergence_from_the_last_epoch():
    classify, denoise = tasks.create("classify"), tasks.create("denoise")
    gain, converged = convergence(history("acc", 0.70, 0.80, 0.823), classify)
    assert gain == pytest.approx(0.023) and converged is False  # +2.3 pt > 1 pt
    assert convergence(history("acc", 0.80, 0.805), classify)[1] is True
    assert convergence(history("acc", 0.80, 0.75), classify)[1] is True  # a fall is not a rise
    assert convergence(history("psnr", 27.0, 27.3), denoise)[1] is False  # +0.3 dB > 0.2 dB
    assert convergence(history("psnr", 27.0, 27.1), denoise)[1] is True
    assert convergence(history("acc", 0.5), classify) == (None, None)


def test_convergence_marker_text():
    accuracy = tasks.create("classify").score
    assert report.convergence_text(accuracy, 0.023, False) == "NOT CONVERGED: +2.30 pt in the last epoch"
    assert report.convergence_text(accuracy, 0.004, True) == "yes (+0.40 pt in the last epoch)"
    assert report.convergence_text(accuracy, None, None, epochs=1) == "unknown (one epoch)"
    assert report.convergence_text(accuracy, None, None, epochs=3) == "-"  # a record from before the check


def test_a_run_records_its_convergence_and_reports_flag_it(tmp_path):
    out = tmp_path / "run"
    settings = RunSettings("alexnet", "synthetic", epochs=2, train_subset=64, test_subset=32, batch_size=16,
                           lr=0.2)
    metrics = cdprune.train_run(out, settings, progress=False)
    rows = (out / "history.csv").read_text().splitlines()[1:]
    accs = [float(row.split(",")[5]) for row in rows]  # test_acc
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["last_epoch_gain"] == pytest.approx(accs[1] - accs[0])
    assert recorded["converged"] is (accs[1] - accs[0] <= 0.01)
    assert recorded["effective_lr"] == pytest.approx(0.2 * 16 / 128)
    assert read_metrics(out).converged is recorded["converged"]
    # A run whose last epoch gained 5 pt is flagged in the run summary and in the side-by-side table.
    rising = replace(metrics, last_epoch_gain=0.05, converged=False)
    assert "NOT CONVERGED: +5.00 pt in the last epoch" in report.run_text(rising)
    header, table = report.comparison_rows([metrics, rising])
    row = next(r for r in table if r[0] == "converged")
    assert row[2] == "NOT CONVERGED: +5.00 pt in the last epoch" and row[1] != row[2]
    # Over seeds (compare): how many seeds, and the largest rise.
    steady = replace(metrics, last_epoch_gain=0.002, converged=True)
    summary = MethodSummary.of("dense", [steady, rising])
    assert summary.not_converged == 1 and summary.last_epoch_gain_max == pytest.approx(0.05)
    header, rows = report.compare_rows([summary, MethodSummary.of("fa", [steady])])
    column = header.index("converged")
    assert rows[0][column] == "NOT CONVERGED: 1 of 2 seeds, up to +5.00 pt in the last epoch"
    assert rows[1][column] == "yes"
