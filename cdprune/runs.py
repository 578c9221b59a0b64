"""Train → measure: one training run and its run directory (docs/design.md, "File formats").

A run directory holds

    run.json            the settings, written first (a resumed run must match them)
    plan.json           the pruning plan (absent for a dense run)
    checkpoint.safetensors, history.csv   while training, refreshed every epoch
    model.safetensors   the trained weights (no pickle)
    metrics.json        accuracy, params, FLOPs, memory, latency, energy, wall time

The model is rebuilt from the registry, the plan and the weights; no file is
ever unpickled.
"""
from __future__ import annotations

import contextlib
import copy
import math
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from . import distributed, models
from .complexity import architecture_id, profile
from .data import AUGMENTATIONS, DATASETS, dataset_info, load_dataset
from .errors import CdpruneError
from .storage import (atomic_write_json, load_weights, lock_directory, read_checkpoint_meta, read_json_object,
                 remove_stale_temps, save_weights)
from .measure import estimate_energy, measure_latency
from .records import Record
from .pruning import PruningPlan, apply_plan
from .tasks import KINDS as TASK_KINDS
from .tasks import Task, input_scores
from .tasks import create as create_task
from .train import CHECKPOINT_NAME, TrainConfig, evaluate, resolve_device, train

PLAN_FILE, WEIGHTS_FILE, METRICS_FILE, SETTINGS_FILE = "plan.json", "model.safetensors", "metrics.json", "run.json"
TRAINING_PASSES = 3  # one forward + a backward of about twice its cost, the usual estimate


@dataclass(frozen=True)
class RunSettings:
    """What a run trains: model, data and training settings, as plain values."""

    model: str  # a registered name or a reference 'module:callable' / 'file.py:callable'
    data: str
    data_dir: str | None = None
    model_args: dict = field(default_factory=dict)  # keyword arguments of the model's constructor
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None  # None: the task's default, 0.05 (SGD) for classify, 0.001 (Adam) for denoise and sr
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    device: str = "auto"
    num_workers: int = 0
    input_shape: list[int] | None = None  # C,H,W the images are converted to (folder and .npz data)
    augment: str | None = None  # none, flip, crop, crop-flip; None: the data's default
    val_fraction: float = 0.2  # held out as the test split of a folder without train/ and val/
    task: str = "classify"  # classify, denoise or sr (tasks.py)
    noise: float | None = None  # denoise: σ on the 0–255 scale; None: 25
    scale: int | None = None  # sr: 2 or 4; None: 2
    loss: str | None = None  # restoration: "mse" or "l1"; None: the task's default

    def __post_init__(self):
        if self.lr is None:  # an unknown task is refused by check(); the classify default stands in until then
            kind = TASK_KINDS.get(self.task) if isinstance(self.task, str) else None
            object.__setattr__(self, "lr", (kind or TASK_KINDS["classify"]).default_lr)
        if isinstance(self.input_shape, tuple):  # JSON gives lists back: keep one form, so that resume compares equal
            object.__setattr__(self, "input_shape", list(self.input_shape))

    def make_task(self) -> Task:
        """The run's task with its settings checked and defaults filled in."""
        return create_task(self.task, noise=self.noise, scale=self.scale, loss=self.loss)

    def dataset_info(self):
        """The data's facts (classes, input shape, normalisation), read once per process."""
        return dataset_info(self.data, self.data_dir, input_shape=self.input_shape, val_fraction=self.val_fraction,
                            seed=self.seed)

    def load(self, split: str, download: bool = False):
        """One split of the run's data, as training and evaluation see it (restoration: the task's pairs)."""
        dataset = load_dataset(self.data, split, self.data_dir, input_shape=self.input_shape, augment=self.augment,
                               val_fraction=self.val_fraction, download=download,
                               subset=self.train_subset if split == "train" else self.test_subset, seed=self.seed)
        return self.make_task().wrap(dataset, train=split == "train")

    def train_config(self, progress: bool = True) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           device=self.device, num_workers=self.num_workers, progress=progress,
                           task=self.make_task())

    def comparable(self) -> dict:
        """The settings that must agree for a run to be resumed or reused (where data lives and the device may
        change; the worker count may not: data-loader workers draw the augmentation stream). The task's
        settings are compared with their defaults filled in, so `noise=None` and `noise=25` agree."""
        values = {k: v for k, v in asdict(self).items() if k not in ("data_dir", "device")}
        return {**values, **self.make_task().settings()}

    def check(self) -> "RunSettings":
        """Refuse settings that cannot train, before anything is loaded or written."""
        _check_fields(self, "run settings")
        if self.augment is not None and self.augment not in AUGMENTATIONS:
            raise CdpruneError(f"unknown augmentation '{self.augment}': choose one of {', '.join(AUGMENTATIONS)} "
                               "(--augment)")
        if not 0 < self.val_fraction < 1:
            raise CdpruneError(f"val_fraction must be in (0, 1), got {self.val_fraction} (--val-fraction)")
        for name, least in (("epochs", 1), ("batch_size", 1), ("num_workers", 0), ("seed", 0)):
            if getattr(self, name) < least:
                raise CdpruneError(f"{name} must be at least {least}, got {getattr(self, name)} "
                                   f"(--{name.replace('_', '-').replace('num-', '')})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise CdpruneError(f"learning rate must be a finite number > 0, got {self.lr} (--lr)")
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise CdpruneError(f"{name} must be at least 1, got {getattr(self, name)} "
                                   f"(--{name.replace('_', '-')})")
        resolve_device(self.device)  # "cuda" on a machine without CUDA fails here, not mid-run
        self.make_task()
        return self


@dataclass
class RunMetrics(Record):
    """What a finished run reports. Accuracy is a fraction; FLOPs are MACs per input; memory in bytes.

    `score` is the task's headline figure, named by `score_name`: the accuracy for classify (equal
    to `test_acc`), the mean test PSNR in dB for a restoration task (`test_acc` is then None, and
    `ssim`, `input_psnr` and `input_ssim` are set: the latter two score the degraded inputs
    themselves, the reference the network has to beat).
    """

    method: str  # the run's name: "dense", "<method>" or "<method>-<target>" (see run_name)
    model: str
    data: str
    input_shape: list[int]
    num_classes: int
    test_acc: float | None
    params: int
    flops: int
    memory_bytes: int
    reduction: dict  # vs the dense base model, per metric
    latency_ms: float  # CPU, batch 1, median
    latency: dict
    energy_mj: float
    energy: dict
    train_time_s: float  # training passes only
    train_flops: float  # MACs spent on training: passes × MACs per input × inputs seen
    epochs: int
    train_size: int
    test_size: int
    device: str
    settings: dict = field(default_factory=dict)
    plan: dict | None = None  # mode, target, seed of the plan, if pruned
    pretrain_time_s: float = 0.0  # earlier stages of this method (dense training before ranking)
    pretrain_flops: float = 0.0
    processes: int = 1  # data-parallel training processes (torchrun)
    architecture: str = ""  # fingerprint of the unpruned model (complexity.architecture_id)
    source_digest: str | None = None  # of the user's model source files (models.source_digest); None: torch's own
    mean: list[float] = field(default_factory=list)  # input normalisation, per channel, on the [0, 1] scale
    std: list[float] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    augment: str = ""  # the augmentation training used
    task: str = "classify"
    score: float | None = None  # None only in files from before tasks: then it is test_acc
    score_name: str = "accuracy"  # "accuracy" (a fraction) or "PSNR" (dB)
    ssim: float | None = None
    input_psnr: float | None = None
    input_ssim: float | None = None

    def __post_init__(self):
        if self.score is None and self.task == "classify":
            self.score = self.test_acc

    @property
    def total_train_time_s(self) -> float:
        """Wall time of every training stage of the method, pre-training included."""
        return self.pretrain_time_s + self.train_time_s

    @property
    def total_train_flops(self) -> float:
        return self.pretrain_flops + self.train_flops

    @classmethod
    def from_dict(cls, data: dict) -> "RunMetrics":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def run_name(method: str, target: float | None = None, *, budget: bool = False) -> str:
    """The one naming rule for runs (folders, table columns, `RunMetrics.method`).

    "dense"; "<method>-<target>" where runs of one method differ by target (main job, sweep);
    "<method>-budget" for a budget-driven plan; the bare method where the target is shared
    by the whole folder (compare).
    """
    if method == "dense":
        return "dense"
    if target is not None:
        return f"{method}-{target:g}"
    return f"{method}-budget" if budget else method


def plan_run_name(plan: PruningPlan | None) -> str:
    """The name of a run trained from `plan` alone (no method registry involved: `cdprune train`)."""
    return "dense" if plan is None else run_name(plan.mode, plan.target, budget=plan.target is None)


def train_run(out: str | Path, settings: RunSettings, plan: PruningPlan | None = None, *, resume: bool = False,
              download: bool = False, progress: bool = True, init_from: str | Path | None = None,
              method: str | None = None, model: torch.nn.Module | None = None,
              datasets: tuple[Dataset, Dataset] | None = None) -> RunMetrics:
    """Train `settings.model` (pruned by `plan`, if given) from scratch and write the run directory `out`.

    init_from: a finished dense run whose trained weights start the model instead of a fresh
        initialisation (fine-tuning after ranking); its training cost is counted as pre-training.
    model: the unpruned model to start from, instead of building `settings.model` (which then only
        names it); it is copied, not changed. `load_run(out, model=...)` needs it again.
    datasets: (train, test) datasets of your own, wrapped by `cdprune.data.from_dataset` (instead of
        `settings.data`); `eval_run(out, test_set=...)` re-tests the run on such data.
    With resume=True a finished run with the same settings and plan is returned as it is and an
    interrupted one continues from its last checkpoint; without it, a directory that already
    holds a run is refused. Everything is checked (settings, device, data, plan, the run already
    in `out`) before the first byte is written, and one process at a time may write `out`.
    Under torchrun every process trains its share and only rank 0 writes the run directory;
    every rank returns rank 0's metrics.
    """
    out = Path(out)
    settings.check()
    digest = plan.to_dict()["digest"] if plan is not None else None
    if _guard_directory(out, settings, digest, resume) == "finished":
        return read_metrics(out)

    task = settings.make_task()
    if datasets is not None:
        train_set, test_set = datasets
        info = getattr(train_set, "info", None)
        if info is None:
            raise CdpruneError("datasets must carry their facts (.info): wrap them with cdprune.data.from_dataset")
        train_set, test_set = task.wrap(train_set, train=True), task.wrap(test_set, train=False)
    else:
        info = settings.dataset_info()
        train_set, test_set = settings.load("train", download), settings.load("test", download)
    info = task.data_info(info)
    if not task.restoration and info.num_classes < 2:  # every prediction would be right: a "100 %" classifier
        raise CdpruneError(f"{settings.data} holds {info.num_classes} class ({', '.join(info.class_names)}): a "
                           "classifier needs at least two; add a class, or train a restoration task (--task denoise)")
    if task.name == "sr" and min(info.input_shape[1:]) < task.scale:  # shrunk to one pixel: another factor
        raise CdpruneError(f"the images are {'×'.join(map(str, info.input_shape[1:]))}, smaller than the ×{task.scale} "
                           "of super-resolution: use larger images (--input C,H,W) or a smaller factor (--scale)")
    torch.manual_seed(settings.seed)  # the fresh initialisation is part of what the seed reproduces
    pretrained = read_metrics(init_from) if init_from is not None else None
    if isinstance(model, torch.nn.Module):
        base = copy.deepcopy(model)  # the caller's model stays as it was
    else:
        base = models.create(settings.model, info.num_classes, info.input_shape[0], settings.model_args)
    architecture = architecture_id(base)
    if pretrained is not None:
        base.load_state_dict(load_weights(Path(init_from) / WEIGHTS_FILE))
    model = _pruned(base, plan, settings.model, info.input_shape)
    # One forward pass on zeros: a classifier given an image task (or the reverse) fails here, in one line.
    task.check_model(model, info.input_shape, info.num_classes)
    if resume:
        _check_checkpoint(out, settings, len(train_set))
    if datasets is None:
        _note_short_subsets(settings, train_set, test_set)  # once every check has passed

    main = distributed.from_environment().is_main
    # Only rank 0 writes, so only rank 0 takes the directory's lock.
    with lock_directory(out) if main else contextlib.nullcontext():
        if main:
            # Under the lock: another process may have finished or started this run meanwhile.
            _guard_directory(out, settings, digest, resume)
            remove_stale_temps(out)
            atomic_write_json(out / SETTINGS_FILE, {**asdict(settings), "plan_digest": digest})
            if plan is not None:
                plan.save(out / PLAN_FILE)
            else:
                (out / PLAN_FILE).unlink(missing_ok=True)  # left by a start that never finished an epoch
        metrics = _train_and_measure(out, settings, plan, model, info, train_set, test_set, resume, progress,
                                     pretrained, method, architecture)
    return metrics


def _note_short_subsets(settings: RunSettings, train_set: Dataset, test_set: Dataset) -> None:
    """Say so when a subset asks for more images than its split holds: the run uses them all."""
    for split, subset, dataset in (("train", settings.train_subset, train_set), ("test", settings.test_subset, test_set)):
        if subset is not None and subset > len(dataset) and distributed.from_environment().is_main:
            print(f"cdprune: note: {split}_subset (--{split}-subset) {subset} is more than the {len(dataset)} images of "
                  f"the {split} split of {settings.data}: the run uses all {len(dataset)}", file=sys.stderr)


def _train_and_measure(out: Path, settings: RunSettings, plan, model, info, train_set, test_set, resume: bool,
                       progress: bool, pretrained, method, architecture: str) -> RunMetrics:
    result = train(model, train_set, test_set, settings.train_config(progress), out, resume=resume)
    if not distributed.from_environment().is_main:
        return RunMetrics.from_dict(distributed.share_from_main(None))
    save_weights(out / WEIGHTS_FILE, model.state_dict())

    model = model.cpu().to(memory_format=torch.contiguous_format)
    totals = profile(model, info.input_shape).totals
    base = plan.before if plan is not None else totals
    task = settings.make_task()
    reference = input_scores(test_set) if task.restoration else (None, None)
    metrics = RunMetrics(
        method=method or plan_run_name(plan), model=settings.model, data=settings.data,
        input_shape=list(info.input_shape),
        num_classes=info.num_classes, test_acc=result.test_acc, params=totals.params, flops=totals.flops,
        memory_bytes=totals.memory_bytes, reduction=totals.reduction_from(base),
        latency_ms=0.0, latency={}, energy_mj=0.0, energy={}, train_time_s=result.train_time_s,
        train_flops=float(TRAINING_PASSES * totals.flops * len(train_set) * settings.epochs),
        epochs=settings.epochs, train_size=len(train_set), test_size=len(test_set), device=result.device,
        settings=asdict(settings),
        plan=None if plan is None else {"mode": plan.mode, "target": plan.target, "seed": plan.seed},
        pretrain_time_s=pretrained.total_train_time_s if pretrained else 0.0,
        pretrain_flops=pretrained.total_train_flops if pretrained else 0.0, processes=result.processes,
        architecture=architecture, source_digest=models.source_digest(model), mean=list(info.mean), std=list(info.std), class_names=list(info.class_names),
        augment=getattr(train_set, "augment", None) or "none", task=task.name, score=result.test_score,
        score_name=task.score_name, ssim=result.test_ssim, input_psnr=reference[0], input_ssim=reference[1])
    _add_measurements(metrics, model, info.input_shape, plan.energy_model if plan is not None else None)
    atomic_write_json(out / METRICS_FILE, metrics.to_dict())
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)  # the run is complete; the weights file replaces it
    if result.processes > 1:
        distributed.share_from_main(metrics.to_dict())
    return metrics


def _add_measurements(metrics: RunMetrics, model: torch.nn.Module, input_shape, energy_model=None) -> None:
    """Latency on this CPU, and energy estimated by the plan's energy model (default: 45 nm) over the layers."""
    latency = measure_latency(model, input_shape, batch=1)
    energy = estimate_energy(profile(model, input_shape, energy_model), energy_model, latency.p50_ms)
    metrics.latency_ms, metrics.latency = latency.p50_ms, latency.to_dict()
    metrics.energy_mj, metrics.energy = energy.energy_mj, energy.to_dict()


def build_model(ref: str, num_classes: int, input_shape, plan: PruningPlan | None,
                model_args: dict | None = None) -> torch.nn.Module:
    """A fresh model from a reference the caller vouches for (see `models.resolve`), pruned by `plan` when given."""
    base = models.create(ref, num_classes=num_classes, in_channels=input_shape[0], model_args=model_args)
    return _pruned(base, plan, ref, input_shape)


def _pruned(base: torch.nn.Module, plan: PruningPlan | None, ref: str, input_shape) -> torch.nn.Module:
    """`base` pruned by `plan`, after checking that the plan was made for this model and input."""
    if plan is None:
        return base
    if tuple(plan.input_shape) != tuple(input_shape):
        shape = ",".join(map(str, input_shape))
        raise CdpruneError(f"the plan was made for input {','.join(map(str, plan.input_shape))}, but the data is {shape}: "
                           f"make the plan for input_shape {shape} (cdprune prune --input {shape})")
    if plan.model is not None and plan.model != ref and architecture_id(base) != plan.architecture:
        raise CdpruneError(f"the plan was made for {plan.model}, not {ref}: make a plan for {ref} "
                           f"with 'cdprune prune {ref}'")
    return apply_plan(base, plan)


def trusted_reference(recorded: str, given: str | None, where: str | Path) -> str:
    """The model reference to rebuild a recorded run or plan with.

    A registered name is rebuilt as recorded. Any other reference would import code because a
    file names it, so the user must pass it again (`given`); the caller then checks that it
    builds the recorded architecture.
    """
    if given is None:
        if models.is_registered(recorded):
            return recorded
        raise CdpruneError(f"{where} was made with the model '{recorded}', which cdprune imports only when you name "
                           f"it: pass the same reference again, --model {recorded} (model='{recorded}' in the API)")
    return given


def read_metrics(run_dir: str | Path) -> RunMetrics:
    path = Path(run_dir) / METRICS_FILE
    data = read_json_object(path, "metrics file", fix="train the run again")
    if data is None:
        raise CdpruneError(f"{run_dir} holds no finished run ({METRICS_FILE} missing): train one with 'cdprune train'")
    names = {f.name for f in fields(RunMetrics)}
    try:
        metrics = RunMetrics.from_dict(data)
    except TypeError:
        missing = sorted(f.name for f in fields(RunMetrics) if f.name not in data and f.default is MISSING
                         and f.default_factory is MISSING)
        raise CdpruneError(f"metrics file {path} lacks {', '.join(missing) or 'fields'}: train the run again") from None
    _check_fields(metrics, f"metrics file {path}", fix="train the run again", only=names & set(data))
    return metrics


def read_settings(run_dir: str | Path) -> tuple[RunSettings, str | None] | None:
    """The settings and plan digest a run was started with (run.json), or None if it has none."""
    path = Path(run_dir) / SETTINGS_FILE
    data = read_json_object(path, "run settings file", fix=f"delete {path} and start the run over")
    if data is None:
        return None
    names = {f.name for f in fields(RunSettings)}
    try:
        settings = RunSettings(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        raise CdpruneError(f"run settings file {path} lacks model or data: delete it and start the run over") from None
    _check_fields(settings, f"run settings file {path}", fix="delete it and start the run over")
    if "plan_digest" in data:
        return settings, data["plan_digest"]
    plan_path = Path(run_dir) / PLAN_FILE  # run directories from before run.json recorded the plan
    return settings, PruningPlan.load(plan_path).to_dict()["digest"] if plan_path.exists() else None


def check_source(metrics: RunMetrics, model: torch.nn.Module, where, allow_changed_source: bool = False) -> None:
    """Refuse a model whose source files differ from those the run was trained with (same layers, another
    `forward`, say); with allow_changed_source, warn on stderr instead."""
    if not metrics.source_digest or models.source_digest(model) == metrics.source_digest:
        return
    what = (f"the source of model '{metrics.model}' changed since {where} was trained (its layers may match, but "
            "what it computes need not)")
    if not allow_changed_source:
        raise CdpruneError(f"{what}: pass the model file the run was trained with, or --allow-changed-source "
                           "(allow_changed_source=True) to go on with this one")
    print(f"cdprune: WARNING: {what}; going on with it as asked (--allow-changed-source): its results are not "
          "the run's", file=sys.stderr)


def load_run(run_dir: str | Path, model: str | torch.nn.Module | None = None, *,
             allow_changed_source: bool = False) -> tuple[torch.nn.Module, RunMetrics]:
    """Rebuild a finished run's trained model from reference + plan + weights (nothing is unpickled).

    model: the model reference the run was trained with, or a fresh instance of its unpruned model;
        needed (and checked against the recorded architecture) when it is not a registered name.
    allow_changed_source: warn, instead of refusing, when the model's source files differ from those the
        run was trained with (`check_source`).
    """
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    plan = PruningPlan.load(run_dir / PLAN_FILE) if (run_dir / PLAN_FILE).exists() else None
    model_args = metrics.settings.get("model_args") or {}
    if isinstance(model, torch.nn.Module):
        base, ref = copy.deepcopy(model), metrics.model
    else:
        ref = trusted_reference(metrics.model, model, run_dir)
        try:
            base = models.create(ref, metrics.num_classes, metrics.input_shape[0], model_args)
        except CdpruneError as exc:
            if ref == metrics.model:
                raise
            raise CdpruneError(f"{run_dir} was trained with '{metrics.model}', and '{ref}' does not build it "
                               f"({str(exc).split(': check')[0]}): pass the reference it was trained with") from None
    recorded = plan.architecture if plan is not None else metrics.architecture
    if recorded and architecture_id(base) != recorded:
        raise CdpruneError(f"'{ref}' with {model_args} does not build the model {run_dir} was trained with "
                           f"('{metrics.model}'): pass the reference and model arguments it was trained with")
    check_source(metrics, base, run_dir, allow_changed_source)
    model = _pruned(base, plan, ref, metrics.input_shape)
    weights = load_weights(run_dir / WEIGHTS_FILE)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise CdpruneError(f"{run_dir / WEIGHTS_FILE} does not fit the architecture of this run's plan: "
                           "the files come from different runs; train the run again") from None
    return model, metrics


@dataclass(frozen=True)
class EvalResult(Record):
    """A re-test of a finished run. `matches`: its scores equal the recorded ones exactly.

    `score` is the task's headline figure (`score_name`: accuracy, or PSNR in dB); `test_acc` and
    `recorded_acc` are set for classify runs, `ssim` and `recorded_ssim` for restoration runs.
    """

    test_acc: float | None
    test_loss: float
    recorded_acc: float | None
    test_size: int
    score: float | None = None
    recorded_score: float | None = None
    score_name: str = "accuracy"
    ssim: float | None = None
    recorded_ssim: float | None = None

    @property
    def matches(self) -> bool:
        return self.score == self.recorded_score and self.ssim == self.recorded_ssim

    def to_dict(self) -> dict:
        return {**super().to_dict(), "matches": self.matches}


def eval_run(run_dir: str | Path, data_dir: str | None = None, device: str | None = None,
             model: str | torch.nn.Module | None = None, test_set: Dataset | None = None, *,
             allow_changed_source: bool = False) -> EvalResult:
    """Re-evaluate a finished run on its test set, exactly as training evaluated it.

    model: as for `load_run`. test_set: the test data of a run trained on datasets given through
        the API (`train_run(..., datasets=...)`); other runs reload theirs from the recorded settings.
    """
    model, metrics = load_run(run_dir, model, allow_changed_source=allow_changed_source)
    settings = _recorded_settings(Path(run_dir), metrics)
    task = settings.make_task()
    if test_set is None:
        if data_dir:
            settings = replace(settings, data_dir=data_dir)
        test_set = _recorded_split(Path(run_dir), settings, metrics, "test")
    else:
        test_set = task.wrap(test_set, train=False)
    config = settings.train_config()
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    scores = evaluate(model, test_set, 2 * settings.batch_size, device or metrics.device, settings.num_workers,
                      config.channels_last, task)
    classify = not task.restoration
    return EvalResult(test_acc=scores.score if classify else None, test_loss=scores.loss,
                      recorded_acc=metrics.test_acc, test_size=len(test_set), score=scores.score,
                      recorded_score=metrics.score, score_name=task.score_name, ssim=scores.ssim,
                      recorded_ssim=metrics.ssim)


def run_data(run_dir: str | Path, split: str, data_dir: str | None = None) -> tuple[Dataset, RunMetrics]:
    """One split ("train" or "test") of a finished run's data, reloaded through its recorded settings.

    The items are normalised as training normalised them (the training split also carries the
    run's augmentation; `dataset.plain(indices)` gives un-augmented images). data_dir: where the
    data lives now, when it moved.
    """
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    settings = _recorded_settings(run_dir, metrics)
    if data_dir:
        settings = replace(settings, data_dir=data_dir)
    return _recorded_split(run_dir, settings, metrics, split), metrics


def _recorded_settings(run_dir: Path, metrics: RunMetrics) -> RunSettings:
    try:
        settings = RunSettings(**metrics.settings)
    except TypeError:
        raise CdpruneError(f"{run_dir / METRICS_FILE} records malformed settings: train the run again") from None
    _check_fields(settings, f"metrics file {run_dir / METRICS_FILE}", fix="train the run again")
    return settings


def _recorded_split(run_dir: Path, settings: RunSettings, metrics: RunMetrics, split: str) -> Dataset:
    try:
        settings.dataset_info()
    except CdpruneError as exc:
        if metrics.data not in DATASETS and not Path(metrics.data).expanduser().exists():
            raise CdpruneError(f"{run_dir} was trained on data '{metrics.data}' that cdprune cannot load again "
                               "(a dataset given through the API?): pass its test split, eval_run(..., test_set=...), "
                               "or its folder with --data-dir") from None
        raise exc
    dataset = settings.load(split)
    if metrics.mean and (list(dataset.info.mean) != metrics.mean or list(dataset.info.std) != metrics.std):
        raise CdpruneError(f"the data of {run_dir} changed since training (its normalisation differs): evaluate on "
                           "the data it was trained on")
    return dataset


def _guard_directory(out: Path, settings: RunSettings, plan_digest: str | None, resume: bool) -> str:
    """What `out` holds, refusing every case that must not be written: "finished" (reuse it), "interrupted"
    (resume it) or "new" (train from scratch). Reads only."""
    if out.exists() and not out.is_dir():
        raise CdpruneError(f"{out} is a file, not a run directory: choose another output folder (--out)")
    finished, started = (out / METRICS_FILE).exists(), (out / CHECKPOINT_NAME).exists()
    if not finished and not started:
        # Nothing trained yet: settings written by a start that never finished an epoch are replaced.
        return "new"
    if not resume:
        what = "a finished run: choose another output folder (--out), or delete it to train again" if finished else \
            (f"an interrupted run: resume it (--resume), or delete {out / CHECKPOINT_NAME} to start it over")
        raise CdpruneError(f"{out} already holds {what}")
    recorded = read_settings(out)
    if recorded is not None:
        old, old_digest = recorded
        if old.comparable() != settings.comparable():
            now = settings.comparable()
            diff = ", ".join(f"{k}={v!r}, now {now[k]!r}" for k, v in old.comparable().items() if now[k] != v)
            raise CdpruneError(f"{out} was started with other settings ({diff}): use them to resume, or choose "
                               "another output folder (--out)")
        if old_digest != plan_digest:
            was = "dense (no plan)" if old_digest is None else f"the plan {out / PLAN_FILE}"
            now = "no plan" if plan_digest is None else "another plan"
            raise CdpruneError(f"{out} was started {'as ' if old_digest is None else 'with '}{was}, but {now} was "
                               "given: pass the same plan (--plan) to resume, or choose another output folder (--out)")
    return "finished" if finished else "interrupted"


def _check_checkpoint(out: Path, settings: RunSettings, train_size: int) -> None:
    """A checkpoint to resume must be readable and made by these settings; checked before anything is written."""
    path = out / CHECKPOINT_NAME
    if not path.exists():
        return
    try:
        old = read_checkpoint_meta(path).get("run", {})
    except CdpruneError:
        raise CdpruneError(f"checkpoint {path} is damaged: delete it to start this run over "
                           "(the finished epochs in it are lost)") from None
    expected = {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                "seed": settings.seed, "train_size": train_size, "num_workers": settings.num_workers}
    diff = [k for k in expected if k in old and old[k] != expected[k]]
    if diff:
        was = ", ".join(f"{k}={old[k]!r} (now {expected[k]!r})" for k in diff)
        raise CdpruneError(f"checkpoint {path} was made with {was}: use those settings to resume, or delete it to "
                           "start this run over")


def _fits(value, kind: str) -> bool:
    """Whether a JSON value fits one annotation ("int", "float", "list[int]", "None", …); bools are not numbers."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"None": value is None, "int": number and isinstance(value, int),
            "float": number and math.isfinite(value), "str": isinstance(value, str),
            "dict": isinstance(value, dict), "list": isinstance(value, (list, tuple)),
            "bool": isinstance(value, bool)}.get(kind.split("[")[0], True)


def _check_fields(record, what: str, fix: str = "", only: set[str] | None = None) -> None:
    """Refuse a record whose fields hold the wrong JSON types (a hand-edited or damaged file, a bad API call)."""
    for f in fields(record):
        value, kinds = getattr(record, f.name), str(f.type).replace(" ", "").split("|")
        if (only is None or f.name in only) and not any(_fits(value, k) for k in kinds):
            raise CdpruneError(f"{what}: {f.name} is {value!r}, not {' or '.join(kinds)}" + (f": {fix}" if fix else ""))
