"""Train a network for a task: LR warm-up then cosine, per step; the task's loss, optimiser and scores (cdprune/tasks/).

One epoch = one pass over the training set, then one pass over the test set.
After every epoch `out_dir/checkpoint.safetensors` and `out_dir/history.csv`
are rewritten atomically, so Ctrl-C (or a crash) loses at most the epoch in
progress, and `train(..., resume=True)` continues to the same final weights,
bit for bit on CPU, as a run that was never interrupted.

Under torchrun the same function trains data-parallel (DistributedDataParallel):
each of the N processes takes 1/N of every batch, so `batch_size` stays the
global batch and the LR schedule means the same thing; rank 0 evaluates,
writes every file and shows the progress bar. One process and N processes
shuffle alike (`epoch_order`): at every step the N local batches together are
the batch one process would train on.
"""
from __future__ import annotations

import math
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from . import distributed
from .errors import CdpruneError
from .formatting import csv_text
from .storage import atomic_write_text, load_checkpoint, read_checkpoint_meta, save_checkpoint
from .tasks import CLASSIFY, Task

CHECKPOINT_NAME = "checkpoint.safetensors"
HISTORY_NAME = "history.csv"
AUTOCAST_DTYPES = {"bf16": torch.bfloat16}  # TrainConfig.autocast and RunSettings.autocast (--autocast)


@dataclass
class TrainConfig:
    """Training settings, as plain values; the defaults suit CIFAR-scale data."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05            # peak LR, used as given (RunSettings scales the user's LR with the batch size)
    momentum: float = 0.9       # SGD; Adam keeps its default betas
    weight_decay: float = 5e-4  # on weights with two or more dimensions; none on BN parameters and biases
    nesterov: bool = True
    warmup: float = 0.1         # share of all optimiser steps spent raising the LR linearly to `lr`; 0: none
    label_smoothing: float = 0.0  # classify's training loss only; a task without labels refuses any other value
    seed: int = 0
    device: str = "auto"        # "auto" (CUDA if available), "cpu", "cuda" or "cuda:N"
    amp: bool | None = None     # None: mixed precision on CUDA; always off on CPU
    autocast: str | None = None  # "bf16": forward pass and loss under bf16 autocast on any device; None: as `amp` says
    num_workers: int = 0
    progress: bool = True       # tqdm bar on stderr
    channels_last: bool = True  # NHWC tensors: about 25 % faster convs on a CPU (oneDNN) and on tensor cores
    task: Task = CLASSIFY  # the loss, metrics and optimiser (tasks.create builds one)
    distill: "Distillation | None" = None  # a teacher the loss also follows


@dataclass
class Distillation:
    """A teacher model whose outputs the training loss also follows: the task's `distill_loss` with the teacher's
    share `weight` (α) and softening `temperature` (T). The teacher runs in eval mode, without gradients
    (docs/design.md, "Inheriting weights and distillation")."""

    teacher: torch.nn.Module
    weight: float = 0.5
    temperature: float = 4.0

    def settings(self) -> dict:
        return {"weight": self.weight, "temperature": self.temperature}

    def loss(self, task: Task, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_output = self.teacher(x)
        return task.distill_loss(output, y, teacher_output, self.weight, self.temperature)


# The settings that shape the weight trajectory: a checkpoint may only be
# resumed by a run that agrees on all of them. num_workers is one because each
# DataLoader worker draws augmentation from its own RNG: another worker count
# augments the same images differently.
_RUN_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "nesterov", "seed", "num_workers", "warmup",
             "label_smoothing")
# An epoch of fewer optimiser steps than this gets a warning: the schedule has too few steps to anneal over.
FEW_STEPS = 20


@dataclass
class EpochRecord:
    """One row of history.csv. Losses are the task's loss per sample (classify: cross-entropy in
    nats, label-smoothed in training when the run smooths labels; denoise and sr: MSE or L1 per pixel on the
    [0, 1] scale), lr is the LR of the epoch's first optimiser step, train_time_s the wall time of its training
    pass and epoch_time_s that of its training and test passes. `scores` holds the task's columns
    (`Task.epoch_scores`: train_acc and test_acc, or train_psnr, test_psnr and test_ssim), which read as
    attributes too: `record.test_acc`."""

    epoch: int
    lr: float
    train_loss: float
    test_loss: float
    train_time_s: float
    epoch_time_s: float
    scores: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        scores = self.__dict__.get("scores", {})
        if name in scores:
            return scores[name]
        raise AttributeError(f"{type(self).__name__} has no column {name!r}")

    def row(self) -> dict:
        """The record as one flat dict of columns (a checkpoint's history entry)."""
        return {k: v for k, v in asdict(self).items() if k != "scores"} | self.scores

    @classmethod
    def from_row(cls, row: dict) -> "EpochRecord":
        common = {f.name for f in fields(cls)} - {"scores"}
        return cls(**{k: row[k] for k in common}, scores={k: v for k, v in row.items() if k not in common})


class Scores(NamedTuple):
    """A test pass: mean loss per sample, the task's headline score (accuracy, mean PSNR) and its
    extra scores by key (mean SSIM; None for a task without any)."""

    loss: float
    score: float
    extras: dict | None = None


@dataclass
class TrainResult:
    """Outcome of `train`; train_time_s sums the training passes (no evaluation) over all sessions."""

    history: list[EpochRecord] = field(default_factory=list)
    train_time_s: float = 0.0
    epochs: int = 0
    device: str = "cpu"
    processes: int = 1  # data-parallel processes (torchrun), 1 otherwise
    test_score: float = 0.0  # the task's headline: accuracy, PSNR (dB), …
    test_extras: dict = field(default_factory=dict)  # the task's extra scores by key (ssim)

    @property
    def test_acc(self) -> float | None:
        """The last test accuracy, for a task that records one (None otherwise)."""
        return self.history[-1].scores.get("test_acc") if self.history else None


class TrainingInterrupted(CdpruneError):
    """Ctrl-C during training; the checkpoint of epoch `last_epoch` is on disk."""

    def __init__(self, last_epoch: int):
        super().__init__(f"training interrupted after epoch {last_epoch}; rerun with --resume to continue")
        self.last_epoch = last_epoch


def resolve_device(name: str) -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a usable torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise CdpruneError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise CdpruneError(f"bad device name {name!r}; use 'cuda' or 'cuda:N'") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CdpruneError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise CdpruneError(f"unknown device {name!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, batch_size: int = 512,
             device: str | torch.device = "cpu", num_workers: int = 0,
             channels_last: bool = False, task: Task = CLASSIFY) -> Scores:
    """The task's mean loss per sample and its scores on `dataset` (classify: cross-entropy in nats and
    accuracy as a fraction; denoise and sr: the loss per pixel, mean PSNR in dB and mean SSIM).

    Moves `model` to `device`; its train/eval mode is restored afterwards.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    if len(dataset) == 0:
        raise CdpruneError("cannot evaluate on an empty dataset")
    was_training = model.training
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    # float64 sums: a per-image PSNR summed in float32 would round differently with the batch size.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    score_sum = torch.zeros((), dtype=torch.float64, device=device)
    extra_sums = {s.key: torch.zeros((), dtype=torch.float64, device=device) for s in task.extra_scores}
    for x, y in loader:
        x, y = _to_device(x, device, channels_last), _to_device(y, device, channels_last)
        output = model(x)
        loss_sum += task.loss_of(output, y, reduction="sum")
        score_sum += task.score_sum(output, y)
        for key, value in task.extra_sums(output, y).items():
            extra_sums[key] += value
    model.train(was_training)
    n = len(dataset)
    extras = {key: total.item() / n for key, total in extra_sums.items()}
    return Scores(loss_sum.item() / n, score_sum.item() / n, extras or None)


def epoch_order(n: int, seed: int, epoch: int, world_size: int = 1, rank: int = 0) -> list[int]:
    """The indices of an n-sample training set that process `rank` of `world_size` trains on in
    `epoch` (counted from 1), in training order.

    There is one shuffled order per (seed, epoch), whatever the world size, dealt out rank by
    rank: its i-th index goes to rank i mod world_size. So the ranks' shares of each global batch
    together make up the batch a single process draws. When n is not a multiple of world_size,
    the order is padded with its own first indices so that every rank takes as many steps.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise CdpruneError(f"rank {rank} of {world_size} processes does not exist", "use 0 <= rank < world size")
    # DistributedSampler without a process group is a pure function of its arguments; with one
    # replica it is a plain permutation, so one process and N shuffle by the same code.
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=_shuffle_seed(seed, epoch))
    return list(sampler)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, world_size: int = 1,
                  rank: int = 0) -> list[list[int]]:
    """Process `rank`'s batches in `epoch`: its `epoch_order` cut into batches of
    batch_size / world_size indices (`batch_size` is the global batch, as in TrainConfig).

    A last batch of a single index is dropped when there are others, since BatchNorm cannot
    train on one sample; all ranks drop it at the same step. So the ranks' step-k batches
    together equal a single process's step-k batch whenever n is a multiple of batch_size,
    and otherwise too unless the ranks drop a last batch that one process keeps.
    """
    if batch_size < 1 or world_size < 1 or batch_size % world_size:
        raise CdpruneError(f"batch size {batch_size} does not split over {world_size} processes",
                           f"use a multiple of {world_size}")
    local = batch_size // world_size
    order = epoch_order(n, seed, epoch, world_size, rank)
    batches = [order[i:i + local] for i in range(0, len(order), local)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def train(model: torch.nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig,
          out_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train `model` in place for `config.epochs` epochs, checkpointing each one.

    resume=True continues from `out_dir/checkpoint.safetensors` if there is one
    (its settings must match `config`); resume=False discards it and starts over.
    Ctrl-C raises TrainingInterrupted once the stderr notice is printed.
    """
    _check_config(config, train_set)
    task = config.task
    _check_fit(model, train_set, task)
    group = distributed.from_environment()
    if config.batch_size % group.world_size:
        raise CdpruneError(f"batch size {config.batch_size} does not split over {group.world_size} processes",
                           f"use a multiple of {group.world_size}")
    device = distributed.join(group, config.device) or resolve_device(config.device)
    check_autocast(config.autocast, device)
    out_dir = Path(out_dir)
    if group.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, history_path = out_dir / CHECKPOINT_NAME, out_dir / HISTORY_NAME

    if config.autocast is not None:  # weights, gradients and the optimiser stay fp32; only the forward pass is cast
        use_amp, amp_dtype = True, AUTOCAST_DTYPES[config.autocast]
        if group.is_main and device.type == "cpu" and not cpu_has_bf16():
            print("cdprune: warning: this CPU has no bf16 instructions (avx512_bf16 or amx_bf16): bf16 autocast "
                  "will likely train slower than fp32", file=sys.stderr)
    else:
        use_amp = device.type == "cuda" and config.amp is not False
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = task.make_optimizer(parameter_groups(model, config.weight_decay), config)
    steps = steps_per_epoch(len(train_set), config.batch_size, group.world_size)
    if group.is_main:
        _warn_few_steps(len(train_set), config.batch_size, steps)
    total = config.epochs * steps
    warm = warmup_steps(config.warmup, total)
    # A LambdaLR's checkpoint holds its step count; the factor is rebuilt from the settings, which resume checks.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warm))
    # bf16 has fp32's exponent range, so only fp16 needs loss scaling.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    run = {**{k: getattr(config, k) for k in _RUN_KEYS}, "train_size": len(train_set)}
    if group.active:  # half-batch BN statistics make a 2-process trajectory differ from a 1-process one
        run["processes"] = group.world_size
    if task != CLASSIFY:  # absent for classify, so that checkpoints from before tasks still resume
        run["task"] = task.settings()
    if config.autocast is not None:  # absent in fp32, so that earlier checkpoints still resume
        run["autocast"] = config.autocast
    if config.distill is not None:  # absent without a teacher, so that earlier checkpoints still resume
        run["distill"] = config.distill.settings()
        config.distill.teacher.to(device).eval()
        if config.channels_last:
            config.distill.teacher.to(memory_format=torch.channels_last)
    columns = task.history_columns()
    # DDP starts every rank from rank 0's weights; the raw model is what gets saved and evaluated.
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if group.active else model

    history: list[EpochRecord] = []
    if resume and ckpt_path.exists():
        history = _restore(ckpt_path, model, optimizer, scheduler, scaler, run)
        if group.is_main:
            _write_history(history_path, history, columns)  # the crash may have come between the two writes
    elif group.is_main:
        # A stale checkpoint must not be resumed later in place of this run.
        ckpt_path.unlink(missing_ok=True)
        history_path.unlink(missing_ok=True)

    saved_epoch = len(history)
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            loader = _train_loader(train_set, config, epoch, group, device)
            with tqdm(total=len(loader), desc=f"epoch {epoch}/{config.epochs}", unit="batch", file=sys.stderr,
                      disable=not (config.progress and group.is_main), dynamic_ncols=True) as bar:
                train_loss, train_score = _train_epoch(net, loader, optimizer, scaler, device, use_amp, amp_dtype,
                                                       config.channels_last, bar, task, scheduler,
                                                       config.label_smoothing, config.distill)
                train_time = time.perf_counter() - t0
                # One process tests on the whole set, so the recorded score is exactly what
                # `cdprune eval` reproduces; the others wait for its figures.
                scores = tuple(evaluate(model, test_set, 2 * config.batch_size, device, config.num_workers,
                                        config.channels_last, task)) if group.is_main else None
                test = Scores(*distributed.share_from_main(scores))
                key = task.score.key
                bar.set_postfix({"loss": f"{train_loss:.3f}", key: f"{train_score:.3f}",
                                 f"test_{key}": f"{test.score:.3f}"})
            history.append(EpochRecord(epoch, lr, train_loss, test.loss, train_time, time.perf_counter() - t0,
                                       task.epoch_scores(train_score, test.score, test.extras)))
            if group.is_main:
                save_checkpoint(ckpt_path, model, optimizer, _meta(run, history, scheduler, scaler))
                _write_history(history_path, history, columns)
            saved_epoch = epoch
    except KeyboardInterrupt:
        raise TrainingInterrupted(saved_epoch) from None

    last = history[-1].scores
    return TrainResult(history=history, train_time_s=sum(r.train_time_s for r in history), epochs=config.epochs,
                       device=device.type if group.active else str(device), processes=group.world_size,
                       test_score=last[f"test_{task.score.key}"],
                       test_extras={s.key: last[f"test_{s.key}"] for s in task.extra_scores})


def check_autocast(value: str | None, device: torch.device | None = None) -> None:
    """Refuse an autocast setting other than None or "bf16", and bf16 on a GPU without it."""
    if value is not None and value not in AUTOCAST_DTYPES:
        raise CdpruneError(f"unknown autocast {value!r}", f"use {' or '.join(AUTOCAST_DTYPES)}, or leave it out "
                           "for fp32", option="autocast")
    if value == "bf16" and device is not None and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise CdpruneError(f"GPU {torch.cuda.get_device_name(device)} does not compute in bf16",
                           "leave --autocast out (training on CUDA already uses fp16 mixed precision)")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (x86's avx512_bf16 or amx_bf16 flags); elsewhere, or without
    /proc/cpuinfo, True: there is nothing to warn about that we can tell."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def _check_fit(model: torch.nn.Module, train_set: Dataset, task: Task) -> None:
    """Refuse a model whose output does not fit the task before anything is written: one forward pass on
    zeros of the data's input shape, where the data states it (datasets of cdprune.data do)."""
    info = getattr(train_set, "info", None)
    shape = getattr(info, "input_shape", None)
    if shape is not None:
        task.check_model(model, shape, getattr(info, "num_classes", None))


def _shuffle_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _train_loader(train_set: Dataset, config: TrainConfig, epoch: int, group: distributed.Group,
                  device: torch.device) -> DataLoader:
    """This process's share of one epoch, drawn as a function of (seed, epoch, rank) alone,
    so that a resumed run draws what an unbroken one would."""
    batches = epoch_batches(len(train_set), config.batch_size, config.seed, epoch, group.world_size, group.rank)
    # Augmentation, dropout and the DataLoader workers' seeds draw from the global RNGs:
    # seeding them per (seed, epoch, rank) keeps ranks apart and makes a resumed epoch draw
    # exactly what the unbroken run's did, without carrying RNG states in the checkpoint.
    _seed_everything(_shuffle_seed(config.seed, epoch) * 1009 + group.rank)
    return DataLoader(train_set, batch_sampler=batches, num_workers=config.num_workers,
                      pin_memory=device.type == "cuda")


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    if channels_last and x.dim() == 4:
        return x.to(device, memory_format=torch.channels_last, non_blocking=True)
    return x.to(device, non_blocking=True)


def _train_epoch(model, loader, optimizer, scaler, device, use_amp, amp_dtype, channels_last, bar,
                 task: Task = CLASSIFY, scheduler=None, label_smoothing: float = 0.0,
                 distill: Distillation | None = None) -> tuple[float, float]:
    """One pass over `loader`, `scheduler` stepped after every optimiser step; returns (mean training loss per
    sample, the task's headline score)."""
    model.train()
    # Running sums stay on the device: calling .item() every step would stall the GPU.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    score_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    label = task.score.key
    for step, (x, y) in enumerate(loader, 1):
        x, y = _to_device(x, device, channels_last), _to_device(y, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            output = model(x)
            loss = task.training_loss(output, y, label_smoothing) if distill is None else \
                distill.loss(task, output, x, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # a disabled scaler is a plain backward() + step()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(y)
        score_sum += task.score_sum(output, y)
        seen += len(y)
        bar.update(1)
        if not bar.disable and (step % 20 == 0 or step == len(loader)):
            bar.set_postfix({"loss": f"{loss_sum.item() / seen:.3f}", label: f"{score_sum.item() / seen:.3f}"})
    # Figures over every rank's samples (the set as a whole, not rank 0's share).
    loss_sum, score_sum, seen = distributed.all_sum(loss_sum, score_sum, torch.tensor(seen, device=device))
    return loss_sum.item() / seen.item(), score_sum.item() / seen.item()


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """Optimiser steps in one epoch over `n` training images (`epoch_batches` of rank 0; every rank takes as many,
    and every epoch too)."""
    return len(epoch_batches(n, batch_size, 0, 1, world_size))


def warmup_steps(warmup: float, total_steps: int) -> int:
    """The warm-up's optimiser steps: the share `warmup` of `total_steps`, rounded."""
    return round(warmup * total_steps)


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The LR of optimiser step `step` (from 0) as a share of the peak: a linear rise over the first
    `warmup_steps` steps, (step + 1) / warmup_steps, so the first step already moves and the last warm-up
    step is at the peak; then a cosine from the peak to 0 over the remaining steps, reaching 0 just after the
    last one."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The optimiser's parameter groups: weight decay on the weights of convs and linear layers (two or more
    dimensions), none on BN weights and biases and on any bias (one dimension), whose size decay would only
    shrink without regularising anything."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def convergence(history: list[EpochRecord], task: Task) -> tuple[float | None, bool | None]:
    """(how much the test score rose in the last epoch, whether the run counts as converged): converged
    unless that rise exceeds the task's `Score.max_last_gain` (accuracy 1 pt, PSNR 0.2 dB). A run of one
    epoch gives (None, None): there is no epoch to compare with."""
    if len(history) < 2:
        return None, None
    key = f"test_{task.score.key}"
    gain = history[-1].scores[key] - history[-2].scores[key]
    return gain, gain <= task.score.max_last_gain


def _warn_few_steps(n: int, batch_size: int, steps: int) -> None:
    """Say so when an epoch is too few optimiser steps for the schedule and the batch statistics to settle."""
    if steps >= FEW_STEPS:
        return
    fits = max(1, n // FEW_STEPS)
    print(f"cdprune: warning: an epoch of {n} training images at batch {batch_size} is {steps} optimiser "
          f"step{'s' if steps != 1 else ''}, fewer than {FEW_STEPS}: too few to learn much in a short budget; use a smaller "
          f"--batch-size ({fits} or less gives {FEW_STEPS} steps per epoch)", file=sys.stderr)


def _check_config(config: TrainConfig, train_set: Dataset) -> None:
    if config.epochs < 1 or config.batch_size < 1:
        raise CdpruneError(f"epochs and batch size must be >= 1 (got {config.epochs}, {config.batch_size})")
    if config.lr <= 0:
        raise CdpruneError(f"learning rate must be > 0 (got {config.lr})")
    if not 0 <= config.warmup < 1:
        raise CdpruneError(f"warm-up must be a share of the training steps in [0, 1) (got {config.warmup})",
                           "use for example 0.1 (--warmup)")
    if not 0 <= config.label_smoothing < 1:
        raise CdpruneError(f"label smoothing must be in [0, 1) (got {config.label_smoothing})",
                           "use for example 0.1 (--label-smoothing)")
    config.task.check_label_smoothing(config.label_smoothing)
    check_autocast(config.autocast)
    if config.nesterov and config.momentum <= 0:
        raise CdpruneError("Nesterov momentum needs momentum > 0")
    if len(train_set) == 0:
        raise CdpruneError("the training set is empty")


def _seed_everything(seed: int) -> None:
    """Seed every RNG a dataset's augmentation might draw from."""
    torch.manual_seed(seed)  # CPU and all CUDA devices
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _meta(run: dict, history: list[EpochRecord], scheduler, scaler) -> dict:
    """Everything besides model and optimizer that a resumed run needs (the RNGs are
    reseeded at every epoch's start, so their states are not among it)."""
    return {
        "epoch": len(history),
        "run": run,
        "history": [r.row() for r in history],
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
    }


def _restore(path: Path, model, optimizer, scheduler, scaler, run: dict) -> list[EpochRecord]:
    """Load a checkpoint made by the same run settings; return its history."""
    old = read_checkpoint_meta(path).get("run", {})
    if old != run:
        # Both sides: a setting recorded only when used (autocast, distill, task) may be missing from either.
        diff = [k for k in [*run, *(k for k in old if k not in run)] if old.get(k) != run.get(k)]
        was = ", ".join(f"{k}={old.get(k)!r}" for k in diff)
        now = ", ".join(f"{k}={run.get(k)!r}" for k in diff)
        raise CdpruneError(f"checkpoint {path} was made with {was}, not {now}; "
                           "use the original settings to resume, or start over without --resume")
    meta = load_checkpoint(path, model, optimizer)
    scheduler.load_state_dict(meta["scheduler"])
    if scaler.is_enabled() and meta["scaler"]:
        scaler.load_state_dict(meta["scaler"])
    return [EpochRecord.from_row(row) for row in meta["history"]]


def _write_history(path: Path, history: list[EpochRecord], columns: list[str]) -> None:
    """Rewrite history.csv: a header of the task's columns, one row per epoch."""
    rows = [r.row() for r in history]
    atomic_write_text(path, csv_text(columns, [[row[c] for c in columns] for row in rows]))
