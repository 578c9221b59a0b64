"""bf16 autocast in training (--autocast bf16, RunSettings.autocast, TrainConfig.autocast)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import cdprune.train as train_module
from cdprune import RunSettings, report, storage
from cdprune.errors import CdpruneError
from cdprune.train import TrainConfig, train
from support import (QUADRANTS_TEST, QUADRANTS_TRAIN, TINY_TRAIN, InterruptingDataset, run_cli,
                     straight_and_resumed, tiny_cnn)
from support import one_thread  # noqa: F401 (an autouse fixture)


TRAIN_XY, TEST_SET = QUADRANTS_TRAIN, QUADRANTS_TEST
# 256 images at batch 32: 8 steps per epoch, 24 in all.
FP32 = TrainConfig(epochs=3, batch_size=32, lr=0.05, device="cpu", progress=False, warmup=0.25)
BF16 = replace(FP32, autocast="bf16")


def test_autocast_changes_the_loss_and_still_trains(tmp_path):
    learns = replace(FP32, batch_size=8, lr=0.2)  # 96 steps: enough to learn the quadrants
    fp32 = train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, learns, tmp_path / "fp32")
    bf16_model = tiny_cnn(0)
    bf16 = train(bf16_model, InterruptingDataset(*TRAIN_XY), TEST_SET, replace(learns, autocast="bf16"),
                 tmp_path / "bf16")
    # Same start, same batches: only the forward pass's precision differs, and it shows in every epoch's loss.
    assert all(a.train_loss != b.train_loss for a, b in zip(fp32.history, bf16.history))
    losses = [r.train_loss for r in bf16.history]
    assert losses[2] < losses[1] < losses[0] and losses[2] < 1.0  # ln 4 = 1.386 is chance on 4 classes
    assert bf16.history[-1].test_loss < 0.8 and bf16.test_acc > 0.9
    # The weights and the optimiser stay fp32.
    assert all(p.dtype == torch.float32 for p in bf16_model.parameters())
    meta = storage.read_checkpoint_meta(tmp_path / "bf16" / "checkpoint.safetensors")
    assert meta["run"]["autocast"] == "bf16"
    assert "autocast" not in storage.read_checkpoint_meta(tmp_path / "fp32" / "checkpoint.safetensors")["run"]


def test_resume_of_an_autocast_run_is_bit_identical(tmp_path):
    straight, expected, resumed, result = straight_and_resumed(BF16, tmp_path)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert [r.train_loss for r in result.history] == [r.train_loss for r in expected.history]


def test_resume_with_another_precision_is_refused(tmp_path):
    train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(BF16, epochs=1), tmp_path / "bf16")
    with pytest.raises(CdpruneError, match="autocast='bf16'.*not autocast=None"):
        train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(FP32, epochs=1), tmp_path / "bf16",
              resume=True)
    train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(FP32, epochs=1), tmp_path / "fp32")
    with pytest.raises(CdpruneError, match="autocast=None.*not autocast='bf16'"):
        train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(BF16, epochs=1), tmp_path / "fp32",
              resume=True)


def test_a_run_records_autocast_and_evaluates_in_fp32(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "alexnet", *TINY_TRAIN, "--autocast", "bf16", "--out", out)
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["autocast"] == "bf16"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["autocast"] == "bf16"
    # The test pass after each epoch ran in fp32: an fp32 re-test reproduces the recorded figures exactly.
    code, text, err = run_cli(capsys, "eval", out, "--json")
    assert code == 0 and json.loads(text)["matches"] is True, err
    # Resuming the finished run in fp32 is refused, naming the setting; with bf16 it is returned as it is.
    code, _, err = run_cli(capsys, "train", "alexnet", *TINY_TRAIN, "--resume", "--out", out)
    assert code == 2 and "autocast='bf16', now None" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "train", "alexnet", *TINY_TRAIN, "--autocast", "bf16", "--resume", "--out", out)
    assert code == 0, err


def test_reports_name_the_precision():
    settings = RunSettings("alexnet", "synthetic", batch_size=32, lr=0.08)
    assert report.recipe_text(replace(settings, autocast="bf16")) == \
        "batch 32, peak lr 0.02 (0.08 at batch 128), 10% warm-up then cosine, label smoothing 0.1, bf16 autocast"
    assert "autocast" not in report.recipe_text(settings)


@pytest.mark.parametrize("value", ["fp16", "BF16", ""])
def test_a_bad_value_is_refused_before_anything_is_written(tmp_path, capsys, value):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "alexnet", *TINY_TRAIN, "--autocast", value, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"unknown autocast {value!r}" in err and "use bf16" in err and "--autocast" in err
    assert not out.exists()
    with pytest.raises(CdpruneError, match="unknown autocast"):
        RunSettings("alexnet", "synthetic", autocast=value).check()
    with pytest.raises(CdpruneError, match="unknown autocast"):
        train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(FP32, autocast=value), out)
    assert not out.exists()


@pytest.mark.parametrize("native", [False, True])
def test_a_cpu_without_bf16_instructions_gets_a_warning(tmp_path, capsys, monkeypatch, native):
    monkeypatch.setattr(train_module, "cpu_has_bf16", lambda: native)
    train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(BF16, epochs=1), tmp_path / "bf16")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "bf16" in line]
    assert warnings == ([] if native else ["cdprune: warning: this CPU has no bf16 instructions (avx512_bf16 or "
                                           "amx_bf16): bf16 autocast will likely train slower than fp32"])
    train(tiny_cnn(0), InterruptingDataset(*TRAIN_XY), TEST_SET, replace(FP32, epochs=1), tmp_path / "fp32")
    assert "bf16" not in capsys.readouterr().err  # fp32 training never warns
