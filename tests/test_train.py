"""Tests for cdprune.train and cdprune.storage on a tiny, quickly learnable task.

Images are 1x8x8 noise with one brightened quadrant; the label is the
quadrant's index (4 classes, chance = 0.25).
"""
from __future__ import annotations

import csv
import json
import os
import stat
import struct
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from torch.utils.data import TensorDataset

from cdprune import storage
from cdprune.errors import CdpruneError
from cdprune.train import (
    EpochRecord,
    TrainConfig,
    TrainingInterrupted,
    epoch_batches,
    epoch_order,
    evaluate,
    resolve_device,
    train,
)

from support import InterruptingDataset, one_thread  # noqa: F401 (one_thread: autouse fixture)

NUM_CLASSES = 4


def quadrant_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 0.5 * torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.5
    return x, y


class NoisyDataset(InterruptingDataset):
    """Adds noise from torch's *global* RNG per item, like real augmentation.

    With `interrupt_after` set, the item fetch after that many fetches raises
    KeyboardInterrupt, as if the user pressed Ctrl-C.
    """

    def __init__(self, x, y, interrupt_after: int | None = None):
        super().__init__(x, y, after=interrupt_after)

    def item(self, i):
        return self.x[i] + 0.05 * torch.randn_like(self.x[i]), self.y[i]


class RecordingDataset(NoisyDataset):
    """Notes the index of every item fetched, in the order the training loop asks for them."""

    def __init__(self, x, y):
        super().__init__(x, y)
        self.fetched: list[int] = []

    def __getitem__(self, i):
        self.fetched.append(i)
        return super().__getitem__(i)


def tiny_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, NUM_CLASSES),
    )


TRAIN_XY = quadrant_data(256, seed=1)
TEST_SET = TensorDataset(*quadrant_data(128, seed=2))
CONFIG = TrainConfig(epochs=3, batch_size=32, lr=0.05, seed=0, device="cpu", progress=False)
ONE_EPOCH = replace(CONFIG, epochs=1)


def train_set(interrupt_after: int | None = None) -> NoisyDataset:
    return NoisyDataset(*TRAIN_XY, interrupt_after=interrupt_after)


def temp_files(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def without_times(history: list[EpochRecord]) -> list[EpochRecord]:
    return [replace(r, train_time_s=0.0, epoch_time_s=0.0) for r in history]


def test_learns_pattern_and_writes_history(tmp_path):
    config = replace(CONFIG, epochs=4)
    result = train(tiny_cnn(0), train_set(), TEST_SET, config, tmp_path)

    assert result.test_acc > 0.8  # chance is 0.25
    assert result.epochs == 4 and result.device == "cpu"
    assert result.test_acc == result.history[-1].test_acc
    assert result.train_time_s == pytest.approx(sum(r.train_time_s for r in result.history))
    assert result.train_time_s > 0
    lrs = [r.lr for r in result.history]
    assert lrs[0] == pytest.approx(config.lr / 3)  # the first of 3 warm-up steps (10 % of 32)
    assert lrs[1:] == sorted(lrs[1:], reverse=True) and lrs[-1] < lrs[1] < config.lr  # cosine decay

    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "train_time_s", "epoch_time_s"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]
    assert float(rows[-1][5]) == result.test_acc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "history.csv"]


def test_resume_after_interrupt_is_bit_identical(tmp_path, capsys):
    straight = tiny_cnn(0)
    expected = train(straight, train_set(), TEST_SET, CONFIG, tmp_path / "straight")

    # Ctrl-C part-way through epoch 2 (each epoch fetches 256 items).
    out = tmp_path / "broken"
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_cnn(0), train_set(interrupt_after=256 + 40), TEST_SET, CONFIG, out)
    assert info.value.last_epoch == 1
    assert "rerun with --resume" in str(info.value)
    assert storage.read_checkpoint_meta(out / "checkpoint.safetensors")["epoch"] == 1
    assert len((out / "history.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert temp_files(out) == []

    # A differently initialised model proves the weights come from the checkpoint.
    resumed = tiny_cnn(123)
    result = train(resumed, train_set(), TEST_SET, CONFIG, out, resume=True)
    assert_same_weights(resumed, straight)
    assert without_times(result.history) == without_times(expected.history)
    assert result.train_time_s == pytest.approx(sum(r.train_time_s for r in result.history))


def test_resume_of_finished_run_changes_nothing(tmp_path):
    config = ONE_EPOCH
    model = tiny_cnn(0)
    first = train(model, train_set(), TEST_SET, config, tmp_path)
    again_model = tiny_cnn(5)
    again = train(again_model, train_set(), TEST_SET, config, tmp_path, resume=True)
    assert again.history == first.history
    assert_same_weights(again_model, model)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    result = train(tiny_cnn(0), train_set(), TEST_SET, ONE_EPOCH, tmp_path, resume=True)
    assert [r.epoch for r in result.history] == [1]


def test_interrupt_in_first_epoch_discards_old_run(tmp_path, capsys):
    train(tiny_cnn(0), train_set(), TEST_SET, ONE_EPOCH, tmp_path)
    assert (tmp_path / "checkpoint.safetensors").exists()

    # resume=False starts over, so the old run's checkpoint must not survive
    # to be resumed by mistake later.
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_cnn(0), train_set(interrupt_after=10), TEST_SET, CONFIG, tmp_path)
    assert info.value.last_epoch == 0
    assert "after epoch 0" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def one_epoch_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_epoch")
    train(tiny_cnn(0), train_set(), TEST_SET, ONE_EPOCH, out)
    return out


# Each DataLoader worker augments from its own RNG, so the worker count shapes the trajectory too.
@pytest.mark.parametrize("change", [{"epochs": 5}, {"batch_size": 16}, {"lr": 0.1}, {"seed": 1}, {"num_workers": 1}])
def test_resume_with_other_settings_is_refused(one_epoch_dir, change):
    before = (one_epoch_dir / "checkpoint.safetensors").read_bytes()
    with pytest.raises(CdpruneError, match=f"{next(iter(change))}="):
        train(tiny_cnn(0), train_set(), TEST_SET, replace(ONE_EPOCH, **change), one_epoch_dir, resume=True)
    assert (one_epoch_dir / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("n", [256, 250, 257])
def test_two_ranks_together_draw_the_single_process_batches(n):
    """Rank r of 2 takes every other index of the one shuffled order, 16 per step: at each step
    the two local batches together must be the single process's 32. 256 fills every batch,
    250 leaves a last batch of 26 (13 per rank), and 257 leaves one index that one process drops
    and that the ranks, padded to 258, drop as one index each."""
    for epoch in (1, 2):
        single = epoch_batches(n, 32, seed=3, epoch=epoch)
        rank0, rank1 = (epoch_batches(n, 32, 3, epoch, world_size=2, rank=r) for r in (0, 1))
        assert len(rank0) == len(rank1) == len(single) == n // 32 + (n % 32 > 1)
        for step, batch in enumerate(single):
            assert len(rank0[step]) == len(rank1[step]) == len(batch) // 2, step
            assert sorted(rank0[step] + rank1[step]) == sorted(batch), step
    order = epoch_order(n, 3, 1)
    assert sorted(order) == list(range(n))  # a permutation: every sample once
    assert order[::2] == epoch_order(n, 3, 1, 2, 0)[:len(order[::2])]
    assert order != epoch_order(n, 3, 2) and order != epoch_order(n, 4, 1)  # reshuffled per epoch and seed
    assert order == epoch_order(n, 3, 1)  # a function of (seed, epoch) alone: what resume relies on


def test_training_takes_the_batches_of_epoch_batches(tmp_path):
    data = RecordingDataset(*TRAIN_XY)
    train(tiny_cnn(0), data, TEST_SET, replace(CONFIG, epochs=2, batch_size=24), tmp_path)
    # 256 = 10 * 24 + 16: the partial last batch is trained on too.
    expected = [i for epoch in (1, 2) for batch in epoch_batches(256, 24, CONFIG.seed, epoch) for i in batch]
    assert data.fetched == expected


def test_epoch_order_refuses_a_rank_outside_the_world():
    with pytest.raises(CdpruneError, match="rank 2 of 2 processes does not exist"):
        epoch_order(10, 0, 1, world_size=2, rank=2)
    with pytest.raises(CdpruneError, match="batch size 5 does not split over 2 processes"):
        epoch_batches(10, 5, 0, 1, world_size=2)


def test_resume_with_other_model_is_refused(one_epoch_dir):
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, NUM_CLASSES))
    with pytest.raises(CdpruneError, match="does not fit"):
        train(other, train_set(), TEST_SET, ONE_EPOCH, one_epoch_dir, resume=True)


def test_checkpoint_is_safetensors_and_round_trips(tmp_path):
    model = tiny_cnn(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x, y = TRAIN_XY
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:32]), y[:32]).backward()
        opt.step()
    rng = torch.get_rng_state()
    path = tmp_path / "ckpt.safetensors"
    storage.save_checkpoint(path, model, opt, {"epoch": 7, "rng": rng, "rows": [{"a": 0.1}]})

    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert raw[8:9] == b"{" and json.loads(raw[8:8 + header_len])  # safetensors header, not a pickle
    with safe_open(str(path), framework="pt") as f:
        assert "optim.state.0.momentum_buffer" in f.keys()

    model2 = tiny_cnn(1)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.5, momentum=0.9, nesterov=True)
    meta = storage.load_checkpoint(path, model2, opt2)
    assert_same_weights(model2, model)
    assert meta["epoch"] == 7 and meta["rows"] == [{"a": 0.1}]
    assert meta["rng"].dtype == torch.uint8 and torch.equal(meta["rng"], rng)
    assert opt2.param_groups[0]["lr"] == 0.1
    for p, p2 in zip(model.parameters(), model2.parameters()):
        assert torch.equal(opt.state[p]["momentum_buffer"], opt2.state[p2]["momentum_buffer"])


def test_weights_round_trip(tmp_path):
    model = tiny_cnn(0)
    model.train()(torch.randn(4, 1, 8, 8))  # bumps BN's num_batches_tracked
    state = dict(model.state_dict())
    state["transposed"] = torch.arange(6.0).reshape(2, 3).t()  # non-contiguous
    state["alias"] = state["0.weight"]  # shares storage with another entry
    path = tmp_path / "w.safetensors"
    storage.save_weights(path, state)
    loaded = storage.load_weights(path)
    assert loaded.keys() == state.keys()
    for k in state:
        assert torch.equal(loaded[k], state[k]), k
    assert loaded["1.num_batches_tracked"].item() == 1
    with pytest.raises(CdpruneError):
        storage.load_weights(tmp_path / "missing.safetensors")


def test_atomic_writes(tmp_path, monkeypatch):
    obj = {"b": 1, "a": [1, 2]}
    storage.atomic_write_json(tmp_path / "x.json", obj)
    text = (tmp_path / "x.json").read_text()
    assert text == json.dumps(obj, indent=2) + "\n" and text.index('"b"') < text.index('"a"')
    storage.atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o666 & ~umask

    # A failure between writing and renaming keeps the old file and no temp file.
    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        storage.atomic_write_bytes(tmp_path / "t.txt", b"new")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    with pytest.raises(TypeError):  # not JSON: fails before any file is made
        storage.atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt", "x.json"]


def test_evaluate_constant_model():
    # Zero logits: loss is ln(4) per sample, argmax picks class 0.
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, NUM_CLASSES))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    model.train()
    loss, acc, ssim = evaluate(model, TEST_SET, batch_size=50)
    assert ssim is None  # classify has no SSIM
    labels = TEST_SET.tensors[1]
    assert loss == pytest.approx(torch.log(torch.tensor(4.0)).item(), rel=1e-6)
    assert acc == pytest.approx((labels == 0).float().mean().item())
    assert model.training  # mode restored


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CdpruneError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(CdpruneError):
        resolve_device("tpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(CdpruneError, match="epochs"):
        train(tiny_cnn(0), train_set(), TEST_SET, replace(CONFIG, epochs=0), tmp_path)
