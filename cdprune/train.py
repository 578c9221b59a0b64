"""Train a classifier: SGD + Nesterov momentum, cosine LR, cross-entropy.

One epoch = one pass over the training set, then one pass over the test set.
After every epoch `out_dir/checkpoint.safetensors` and `out_dir/history.csv`
are rewritten atomically, so Ctrl-C (or a crash) loses at most the epoch in
progress, and `train(..., resume=True)` continues to the same final weights,
bit for bit on CPU, as a run that was never interrupted.

Under torchrun the same function trains data-parallel (DistributedDataParallel):
each of the N processes takes 1/N of every batch, so `batch_size` stays the
global batch and the LR schedule means the same thing; rank 0 evaluates,
writes every file and shows the progress bar.
"""
from __future__ import annotations

import csv
import io
import random
import sys
import time
from dataclasses import asdict, astuple, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from . import distributed
from .errors import CdpruneError
from .io import atomic_write_text, load_checkpoint, read_checkpoint_meta, save_checkpoint

CHECKPOINT_NAME = "checkpoint.safetensors"
HISTORY_NAME = "history.csv"


@dataclass
class TrainConfig:
    """Training settings, as plain values; the defaults suit CIFAR-scale data."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05            # initial LR, annealed to 0 by a cosine over `epochs`
    momentum: float = 0.9
    weight_decay: float = 5e-4  # applied to every parameter, BN and biases included
    nesterov: bool = True
    seed: int = 0
    device: str = "auto"        # "auto" (CUDA if available), "cpu", "cuda" or "cuda:N"
    amp: bool | None = None     # None: mixed precision on CUDA; always off on CPU
    num_workers: int = 0
    progress: bool = True       # tqdm bar on stderr
    channels_last: bool = True  # NHWC tensors: about 25 % faster convs on a CPU (oneDNN) and on tensor cores


# The settings that shape the weight trajectory: a checkpoint may only be
# resumed by a run that agrees on all of them.
_RUN_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "nesterov", "seed")


@dataclass
class EpochRecord:
    """One row of history.csv. Losses are mean cross-entropy per sample (nats),
    accuracies are fractions in [0, 1], lr is the LR used during the epoch,
    train_time_s the wall time of its training pass and epoch_time_s that of
    its training and test passes."""

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    train_time_s: float
    epoch_time_s: float


@dataclass
class TrainResult:
    """Outcome of `train`; train_time_s sums the training passes (no evaluation) over all sessions."""

    history: list[EpochRecord] = field(default_factory=list)
    test_acc: float = 0.0
    train_time_s: float = 0.0
    epochs: int = 0
    device: str = "cpu"
    processes: int = 1  # data-parallel processes (torchrun), 1 otherwise


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
             channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy (nats per sample) and accuracy (fraction) on `dataset`.

    Moves `model` to `device`; its train/eval mode is restored afterwards.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    if len(dataset) == 0:
        raise CdpruneError("cannot evaluate on an empty dataset")
    was_training = model.training
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for x, y in loader:
        x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = len(dataset)
    return loss_sum.item() / n, correct.item() / n


def train(model: torch.nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig,
          out_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train `model` in place for `config.epochs` epochs, checkpointing each one.

    resume=True continues from `out_dir/checkpoint.safetensors` if there is one
    (its settings must match `config`); resume=False discards it and starts over.
    Ctrl-C raises TrainingInterrupted once the stderr notice is printed.
    """
    _check_config(config, train_set)
    group = distributed.from_environment()
    if config.batch_size % group.world_size:
        raise CdpruneError(f"batch size {config.batch_size} does not split over {group.world_size} processes: "
                           f"use a multiple of {group.world_size}")
    device = distributed.join(group, config.device) or resolve_device(config.device)
    local_batch = config.batch_size // group.world_size
    out_dir = Path(out_dir)
    if group.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, history_path = out_dir / CHECKPOINT_NAME, out_dir / HISTORY_NAME

    use_amp = device.type == "cuda" and config.amp is not False
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    _seed_everything(config.seed)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    # bf16 has fp32's exponent range, so only fp16 needs loss scaling.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    run = {**{k: getattr(config, k) for k in _RUN_KEYS}, "train_size": len(train_set)}
    if group.active:  # half-batch BN statistics make a 2-process trajectory differ from a 1-process one
        run["processes"] = group.world_size
    # DDP starts every rank from rank 0's weights; the raw model is what gets saved and evaluated.
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if group.active else model

    history: list[EpochRecord] = []
    if resume and ckpt_path.exists():
        history = _restore(ckpt_path, model, optimizer, scheduler, scaler, run, device)
        if group.is_main:
            _write_history(history_path, history)  # the crash may have come between the two writes
    elif group.is_main:
        # A stale checkpoint must not be resumed later in place of this run.
        ckpt_path.unlink(missing_ok=True)
        history_path.unlink(missing_ok=True)

    saved_epoch = len(history)
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            loader = _train_loader(train_set, config, epoch, group, local_batch, device)
            with tqdm(total=len(loader), desc=f"epoch {epoch}/{config.epochs}", unit="batch", file=sys.stderr,
                      disable=not (config.progress and group.is_main), dynamic_ncols=True) as bar:
                train_loss, train_acc = _train_epoch(net, loader, optimizer, scaler, device,
                                                     use_amp, amp_dtype, config.channels_last, bar)
                train_time = time.perf_counter() - t0
                # One process tests on the whole set, so the recorded accuracy is exactly what
                # `cdprune eval` reproduces; the others wait for its figures.
                scores = evaluate(model, test_set, 2 * config.batch_size, device, config.num_workers,
                                  config.channels_last) if group.is_main else None
                test_loss, test_acc = distributed.share_from_main(scores)
                bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", test_acc=f"{test_acc:.3f}")
            history.append(EpochRecord(epoch, lr, train_loss, train_acc, test_loss, test_acc,
                                       train_time, time.perf_counter() - t0))
            scheduler.step()
            if group.is_main:
                save_checkpoint(ckpt_path, model, optimizer, _meta(run, history, scheduler, scaler, device))
                _write_history(history_path, history)
            saved_epoch = epoch
    except KeyboardInterrupt:
        raise TrainingInterrupted(saved_epoch) from None

    return TrainResult(history=history, test_acc=history[-1].test_acc,
                       train_time_s=sum(r.train_time_s for r in history), epochs=config.epochs,
                       device=device.type if group.active else str(device), processes=group.world_size)


def _train_loader(train_set: Dataset, config: TrainConfig, epoch: int, group: distributed.Group,
                  local_batch: int, device: torch.device) -> DataLoader:
    """This process's share of one epoch, shuffled as a function of (seed, epoch) alone,
    so that a resumed run shuffles like an unbroken one."""
    shuffle_seed = config.seed * 100_003 + epoch
    if group.active:
        # The same permutation on every rank, dealt out rank by rank: together the N local
        # batches of a step are exactly the global batch a single process would draw.
        sampler = DistributedSampler(train_set, group.world_size, group.rank, shuffle=True, seed=shuffle_seed)
        # Augmentation and dropout draw from the global RNGs: a per-(seed, epoch, rank) state
        # keeps ranks apart and lets a resumed run draw what an unbroken one would.
        _seed_everything(shuffle_seed * 1009 + group.rank)
        per_rank = len(sampler)
        return DataLoader(train_set, batch_size=local_batch, sampler=sampler, num_workers=config.num_workers,
                          pin_memory=device.type == "cuda", drop_last=per_rank % local_batch == 1)
    generator = torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(train_set, batch_size=local_batch, shuffle=True, generator=generator,
                      num_workers=config.num_workers, pin_memory=device.type == "cuda",
                      drop_last=len(train_set) % local_batch == 1)  # BN fails on a batch of 1


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    if channels_last and x.dim() == 4:
        return x.to(device, memory_format=torch.channels_last, non_blocking=True)
    return x.to(device, non_blocking=True)


def _train_epoch(model, loader, optimizer, scaler, device, use_amp, amp_dtype, channels_last, bar) -> tuple[float, float]:
    """One pass over `loader`; returns (mean loss in nats per sample, accuracy)."""
    model.train()
    # Running sums stay on the device: calling .item() every step would stall the GPU.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for step, (x, y) in enumerate(loader, 1):
        x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # a disabled scaler is a plain backward() + step()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        bar.update(1)
        if not bar.disable and (step % 20 == 0 or step == len(loader)):
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
    # Figures over every rank's samples (the set as a whole, not rank 0's share).
    loss_sum, correct, seen = distributed.all_sum(loss_sum, correct, torch.tensor(seen, device=device))
    return loss_sum.item() / seen.item(), correct.item() / seen.item()


def _check_config(config: TrainConfig, train_set: Dataset) -> None:
    if config.epochs < 1 or config.batch_size < 1:
        raise CdpruneError(f"epochs and batch size must be >= 1 (got {config.epochs}, {config.batch_size})")
    if config.lr <= 0:
        raise CdpruneError(f"learning rate must be > 0 (got {config.lr})")
    if config.nesterov and config.momentum <= 0:
        raise CdpruneError("Nesterov momentum needs momentum > 0")
    if len(train_set) == 0:
        raise CdpruneError("the training set is empty")


def _seed_everything(seed: int) -> None:
    """Seed every RNG a dataset's augmentation might draw from."""
    torch.manual_seed(seed)  # CPU and all CUDA devices
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _meta(run: dict, history: list[EpochRecord], scheduler, scaler, device: torch.device) -> dict:
    """Everything besides model and optimizer that a resumed run needs."""
    np_state = np.random.get_state()
    meta = {
        "epoch": len(history),
        "run": run,
        "history": [asdict(r) for r in history],
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        # Augmentation and dropout draw from these, so they are part of the
        # trajectory just like the weights.
        "rng_torch": torch.get_rng_state(),
        "rng_numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "rng_python": random.getstate(),
    }
    if device.type == "cuda":
        meta["rng_cuda"] = torch.cuda.get_rng_state(device)
    return meta


def _restore(path: Path, model, optimizer, scheduler, scaler, run: dict, device) -> list[EpochRecord]:
    """Load a checkpoint made by the same run settings; return its history."""
    old = read_checkpoint_meta(path).get("run", {})
    if old != run:
        diff = [k for k in run if old.get(k) != run[k]]
        was = ", ".join(f"{k}={old.get(k)!r}" for k in diff)
        now = ", ".join(f"{k}={run[k]!r}" for k in diff)
        raise CdpruneError(f"checkpoint {path} was made with {was}, not {now}; "
                           "use the original settings to resume, or start over without --resume")
    meta = load_checkpoint(path, model, optimizer)
    scheduler.load_state_dict(meta["scheduler"])
    if scaler.is_enabled() and meta["scaler"]:
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(meta["rng_torch"])
    name, keys, pos, has_gauss, cached = meta["rng_numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "rng_cuda" in meta:
        torch.cuda.set_rng_state(meta["rng_cuda"], device)
    return [EpochRecord(**row) for row in meta["history"]]


def _write_history(path: Path, history: list[EpochRecord]) -> None:
    """Rewrite history.csv: a header of EpochRecord's field names, one row per epoch."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([f.name for f in fields(EpochRecord)])
    writer.writerows(astuple(r) for r in history)
    atomic_write_text(path, buf.getvalue())
