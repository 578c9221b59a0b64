"""Train → measure: one training run and its run directory (SPEC §7).

A run directory holds

    run.json            the settings, written first (a resumed run must match them)
    plan.json           the pruning plan (absent for a dense run)
    checkpoint.safetensors, history.csv   while training, refreshed every epoch
    model.safetensors   the trained weights (no pickle)
    metrics.json        accuracy, params, FLOPs, memory, latency, energy, wall time

The model is rebuilt from the registry, the plan and the weights; nothing is
ever unpickled.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from . import distributed, models
from .complexity import Totals, profile
from .data import dataset_info, load_dataset
from .errors import CdpruneError
from .io import atomic_write_json, load_weights, save_weights
from .measure import estimate_energy, measure_latency
from .pruning import PruningPlan, apply_plan
from .train import CHECKPOINT_NAME, TrainConfig, evaluate, train

PLAN_FILE, WEIGHTS_FILE, METRICS_FILE, SETTINGS_FILE = "plan.json", "model.safetensors", "metrics.json", "run.json"
TRAINING_PASSES = 3  # one forward + a backward of about twice its cost, the usual estimate


@dataclass(frozen=True)
class RunSettings:
    """What a run trains: model, data and training settings, as plain values."""

    model: str
    data: str
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    device: str = "auto"
    num_workers: int = 0

    def train_config(self, progress: bool = True) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           device=self.device, num_workers=self.num_workers, progress=progress)

    def comparable(self) -> dict:
        """The settings that must agree for a run to be resumed (where data lives and device may change)."""
        return {k: v for k, v in asdict(self).items() if k not in ("data_dir", "device", "num_workers")}


@dataclass
class RunMetrics:
    """What a finished run reports. Accuracy is a fraction; FLOPs are MACs per input; memory in bytes."""

    method: str  # "dense" or "<mode>-<target>"
    model: str
    data: str
    input_shape: list[int]
    num_classes: int
    test_acc: float
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


def method_name(plan: PruningPlan | None) -> str:
    return "dense" if plan is None else f"{plan.mode}-{plan.target:g}" if plan.target is not None else f"{plan.mode}-budget"


def train_run(out: str | Path, settings: RunSettings, plan: PruningPlan | None = None, *, resume: bool = False,
              download: bool = False, progress: bool = True, init_from: str | Path | None = None,
              method: str | None = None) -> RunMetrics:
    """Train `settings.model` (pruned by `plan`, if given) from scratch and write the run directory `out`.

    init_from: a finished dense run whose trained weights start the model instead of a fresh
        initialisation (fine-tuning after ranking); its training cost is counted as pre-training.
    With resume=True a finished run is returned as it is and an interrupted one continues
    from its last checkpoint; without it, a directory that already holds a run is refused.
    Under torchrun every process trains its share and only rank 0 writes the run directory;
    every rank returns rank 0's metrics.
    """
    out = Path(out)
    _guard_directory(out, settings, resume)
    if resume and (out / METRICS_FILE).exists():
        return read_metrics(out)

    info = dataset_info(settings.data)
    torch.manual_seed(settings.seed)  # the fresh initialisation is part of what the seed reproduces
    pretrained = read_metrics(init_from) if init_from is not None else None
    if pretrained is not None:
        model = build_model(settings.model, info.num_classes, info.input_shape, None)
        model.load_state_dict(load_weights(Path(init_from) / WEIGHTS_FILE))
        if plan is not None:
            apply_plan(model, plan)
    else:
        model = build_model(settings.model, info.num_classes, info.input_shape, plan)
    train_set = load_dataset(info.name, "train", settings.data_dir, download=download, subset=settings.train_subset,
                             seed=settings.seed)
    test_set = load_dataset(info.name, "test", settings.data_dir, download=download, subset=settings.test_subset,
                            seed=settings.seed)

    main = distributed.from_environment().is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / SETTINGS_FILE, asdict(settings))
        if plan is not None:
            plan.save(out / PLAN_FILE)
    result = train(model, train_set, test_set, settings.train_config(progress), out, resume=resume)
    if not main:
        return RunMetrics.from_dict(distributed.share_from_main(None))
    save_weights(out / WEIGHTS_FILE, model.state_dict())

    model = model.cpu().to(memory_format=torch.contiguous_format)
    totals = profile(model, info.input_shape).totals
    base = plan.before if plan is not None else totals
    metrics = RunMetrics(
        method=method or method_name(plan), model=settings.model, data=info.name, input_shape=list(info.input_shape),
        num_classes=info.num_classes, test_acc=result.test_acc, params=totals.params, flops=totals.flops,
        memory_bytes=totals.memory_bytes, reduction=totals.reduction_from(base),
        latency_ms=0.0, latency={}, energy_mj=0.0, energy={}, train_time_s=result.train_time_s,
        train_flops=float(TRAINING_PASSES * totals.flops * len(train_set) * settings.epochs),
        epochs=settings.epochs, train_size=len(train_set), test_size=len(test_set), device=result.device,
        settings=asdict(settings),
        plan=None if plan is None else {"mode": plan.mode, "target": plan.target, "seed": plan.seed},
        pretrain_time_s=pretrained.total_train_time_s if pretrained else 0.0,
        pretrain_flops=pretrained.total_train_flops if pretrained else 0.0, processes=result.processes)
    _add_measurements(metrics, model, totals, info.input_shape)
    atomic_write_json(out / METRICS_FILE, asdict(metrics))
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)  # the run is complete; the weights file replaces it
    if result.processes > 1:
        distributed.share_from_main(asdict(metrics))
    return metrics


def _add_measurements(metrics: RunMetrics, model: torch.nn.Module, totals: Totals, input_shape) -> None:
    latency = measure_latency(model, input_shape, batch=1)
    energy = estimate_energy(totals, input_shape)
    metrics.latency_ms, metrics.latency = latency.p50_ms, latency.to_dict()
    metrics.energy_mj, metrics.energy = energy.energy_mj, energy.to_dict()


def build_model(name: str, num_classes: int, input_shape, plan: PruningPlan | None) -> torch.nn.Module:
    """A fresh model from the registry, pruned by `plan` when one is given."""
    model = models.create(name, num_classes=num_classes, in_channels=input_shape[0])
    if plan is None:
        return model
    if plan.model is not None and plan.model != name:
        raise CdpruneError(f"the plan was made for {plan.model}, not {name}: make a plan for {name} with 'cdprune prune {name}'")
    if tuple(plan.input_shape) != tuple(input_shape):
        shape = ",".join(map(str, input_shape))
        raise CdpruneError(f"the plan was made for input {','.join(map(str, plan.input_shape))}, but the data is {shape}: "
                           f"make the plan with --input {shape} --num-classes {num_classes}")
    return apply_plan(model, plan)


def read_metrics(run_dir: str | Path) -> RunMetrics:
    path = Path(run_dir) / METRICS_FILE
    try:
        return RunMetrics.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise CdpruneError(f"{run_dir} holds no finished run ({METRICS_FILE} missing): train one with 'cdprune train'") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise CdpruneError(f"{path} is damaged ({type(exc).__name__}): train the run again") from None


def load_run(run_dir: str | Path) -> tuple[torch.nn.Module, RunMetrics]:
    """Rebuild a finished run's model from registry + plan + weights (nothing is unpickled)."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    plan = PruningPlan.load(run_dir / PLAN_FILE) if (run_dir / PLAN_FILE).exists() else None
    model = build_model(metrics.model, metrics.num_classes, tuple(metrics.input_shape), plan)
    weights = load_weights(run_dir / WEIGHTS_FILE)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise CdpruneError(f"{run_dir / WEIGHTS_FILE} does not fit the architecture of this run's plan: "
                           "the files come from different runs; train the run again") from None
    return model, metrics


@dataclass(frozen=True)
class EvalResult:
    test_acc: float
    test_loss: float
    recorded_acc: float
    test_size: int

    @property
    def matches(self) -> bool:
        return self.test_acc == self.recorded_acc


def eval_run(run_dir: str | Path, data_dir: str | None = None, device: str | None = None) -> EvalResult:
    """Re-evaluate a finished run on its test set, exactly as training evaluated it."""
    model, metrics = load_run(run_dir)
    settings = RunSettings(**metrics.settings)
    test_set = load_dataset(metrics.data, "test", data_dir or settings.data_dir, subset=settings.test_subset,
                            seed=settings.seed)
    config = settings.train_config()
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    loss, acc = evaluate(model, test_set, 2 * settings.batch_size, device or metrics.device, settings.num_workers,
                         config.channels_last)
    return EvalResult(test_acc=acc, test_loss=loss, recorded_acc=metrics.test_acc, test_size=len(test_set))


def _guard_directory(out: Path, settings: RunSettings, resume: bool) -> None:
    finished, started = (out / METRICS_FILE).exists(), (out / CHECKPOINT_NAME).exists()
    if not resume and finished:
        raise CdpruneError(f"{out} already holds a finished run: choose another --out, or delete it to train again")
    if not resume and started:
        raise CdpruneError(f"{out} holds an interrupted run: add --resume to continue it, or choose another --out")
    if resume and (out / SETTINGS_FILE).exists():
        old = RunSettings(**json.loads((out / SETTINGS_FILE).read_text()))
        if old.comparable() != settings.comparable():
            diff = ", ".join(f"{k}={v!r}" for k, v in old.comparable().items() if settings.comparable()[k] != v)
            raise CdpruneError(f"{out} was started with other settings ({diff}): use them to resume, or choose another --out")
