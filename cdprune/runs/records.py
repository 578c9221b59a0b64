"""What a run records: its settings (run.json), its results (metrics.json), an evaluation, and the
file names of a run directory (docs/design.md, "Run directory")."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..data import AUGMENTATIONS, dataset_info, load_dataset
from ..errors import CdpruneError
from ..pruning import PruningPlan
from ..pruning.apply import KEEP_RULES
from ..records import Record
from ..tasks import DEFAULT_TASK, Task, get_task, list_tasks
from ..tasks import create as create_task
from ..train import TrainConfig, check_autocast, resolve_device

PLAN_FILE, WEIGHTS_FILE, METRICS_FILE, SETTINGS_FILE = "plan.json", "model.safetensors", "metrics.json", "run.json"
TRAINING_PASSES = 3  # one forward + a backward of about twice its cost, the usual estimate
DISTILL_TEMPERATURE = 4.0  # Hinton et al. 2015 use 2 to 20; 4 is the common choice on CIFAR
DISTILL_WEIGHT = 0.5  # the teacher's share α: hard labels and soft targets count alike


@dataclass(frozen=True)
class RunSettings:
    """What a run trains: model, data and training settings, as plain values."""

    model: str  # a registered name or a reference 'module:callable' / 'file.py:callable'
    data: str
    data_dir: str | None = None
    model_args: dict = field(default_factory=dict)  # keyword arguments of the model's constructor
    epochs: int = 10
    batch_size: int = 128
    # At the task's reference batch (128), scaled with batch_size (`effective_lr`); None: the task's default,
    # 0.05 (SGD) for classify, 0.001 (Adam) for denoise and sr.
    lr: float | None = None
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    device: str = "auto"
    num_workers: int = 0
    input_shape: list[int] | None = None  # C,H,W the images are converted to (folder and .npz data)
    augment: str | None = None  # none, flip, crop, crop-flip; None: the data's default
    val_fraction: float = 0.2  # held out as the test split of a folder without train/ and val/
    task: str = DEFAULT_TASK  # a registered task: classify, denoise or sr (cdprune/tasks/)
    noise: float | None = None  # denoise: σ on the 0–255 scale; None: 25
    scale: int | None = None  # sr: 2 or 4; None: 2
    loss: str | None = None  # restoration: "mse" or "l1"; None: the task's default
    warmup: float = 0.1  # share of the optimiser steps over which the LR rises linearly to its peak; 0: none
    label_smoothing: float | None = None  # classify's training labels; None: the task's default (0.1; 0 for restoration)
    autocast: str | None = None  # "bf16": the training forward pass and loss under bf16 autocast; None: fp32

    init: str | None = None  # a finished dense run or a .safetensors file whose weights start the model (--init)
    init_digest: str | None = None  # "sha256:…" of those weights; train_run fills it in
    keep: str | None = None  # which inherited filters a pruned unit keeps: "l1" (the default with init) or "random"
    distill: str | None = None  # a finished run whose outputs the loss also follows (--distill)
    distill_digest: str | None = None  # "sha256:…" of the teacher's weights; train_run fills it in
    distill_temperature: float | None = None  # T; 4 with a teacher
    distill_weight: float | None = None  # α, the teacher's share of the loss; 0.5 with a teacher

    def __post_init__(self):
        # An unknown task is refused by check(); the default task's defaults stand in until then.
        known = isinstance(self.task, str) and self.task in list_tasks()
        task = get_task(self.task if known else DEFAULT_TASK)
        if self.lr is None:
            object.__setattr__(self, "lr", task.default_lr)
        if self.label_smoothing is None:
            object.__setattr__(self, "label_smoothing", task.default_label_smoothing or 0.0)
        if self.init is not None and self.keep is None:
            object.__setattr__(self, "keep", "l1")
        if self.distill is not None:
            for name, default in (("distill_temperature", DISTILL_TEMPERATURE), ("distill_weight", DISTILL_WEIGHT)):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, default)
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

    @property
    def effective_lr(self) -> float:
        """The peak LR training uses: `lr`, given for the task's reference batch, scaled to `batch_size`
        (`Task.scaled_lr`: linearly for SGD, by the square root for Adam)."""
        return self.make_task().scaled_lr(self.lr, self.batch_size)

    def train_config(self, progress: bool = True) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.effective_lr, seed=self.seed,
                           device=self.device, num_workers=self.num_workers, progress=progress,
                           warmup=self.warmup, label_smoothing=self.label_smoothing, autocast=self.autocast,
                           task=self.make_task())

    def comparable(self) -> dict:
        """The settings that must agree for a run to be resumed or reused (where data lives and the device may
        change, and so may the paths of --init and --distill, whose digests are compared instead; the worker count
        may not: data-loader workers draw the augmentation stream). The task's
        settings are compared with their defaults filled in, so `noise=None` and `noise=25` agree."""
        values = {k: v for k, v in asdict(self).items() if k not in ("data_dir", "device", "init", "distill")}
        return {**values, **self.make_task().settings()}

    def check(self) -> "RunSettings":
        """Refuse settings that cannot train, before anything is loaded or written."""
        check_fields(self, "run settings")
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
        if not 0 <= self.warmup < 1:
            raise CdpruneError(f"warmup must be a share of the training steps in [0, 1), got {self.warmup} (--warmup)")
        if not 0 <= self.label_smoothing < 1:
            raise CdpruneError(f"label smoothing must be in [0, 1), got {self.label_smoothing} (--label-smoothing)")
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise CdpruneError(f"{name} must be at least 1, got {getattr(self, name)} "
                                   f"(--{name.replace('_', '-')})")
        check_autocast(self.autocast, resolve_device(self.device))  # "cuda" without CUDA fails here, not mid-run
        task = self.make_task()
        task.check_label_smoothing(self.label_smoothing)
        self._check_inheritance(task)
        return self

    def _check_inheritance(self, task: Task) -> None:
        if self.keep is not None and self.keep not in KEEP_RULES:
            raise CdpruneError(f"unknown keep rule '{self.keep}'", f"choose {' or '.join(KEEP_RULES)} (--keep)")
        if self.keep is not None and self.init is None:
            raise CdpruneError("--keep chooses which inherited filters a pruned unit keeps", "add --init RUN or "
                               "--init FILE.safetensors, or drop --keep")
        if self.distill is None:
            given = [n for n in ("distill_temperature", "distill_weight") if getattr(self, n) is not None]
            if given:
                raise CdpruneError(f"--{given[0].replace('_', '-')} sets the distillation", "add --distill RUN, or drop it")
            return
        if not task.distils:
            raise CdpruneError(f"task {task.name} does not learn from a teacher", "drop --distill")
        if not (math.isfinite(self.distill_temperature) and self.distill_temperature > 0):
            raise CdpruneError(f"distill_temperature must be a finite number > 0, got {self.distill_temperature} "
                               "(--distill-temperature)")
        if not 0 <= self.distill_weight <= 1:
            raise CdpruneError(f"distill_weight must be in [0, 1], got {self.distill_weight} (--distill-weight)")


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
    plan: dict | None = None  # mode, target, seed and planner settings (step, floor, round_to) of the plan, if pruned
    pretrain_time_s: float = 0.0  # earlier stages of this method (dense training before ranking)
    pretrain_flops: float = 0.0
    pretrain_epochs: int = 0  # epochs of those earlier stages
    processes: int = 1  # data-parallel training processes (torchrun)
    architecture: str = ""  # fingerprint of the unpruned model (complexity.architecture_id)
    source_digest: str | None = None  # of the user's model source files (models.source_digest); None: torch's own
    mean: list[float] = field(default_factory=list)  # input normalisation, per channel, on the [0, 1] scale
    std: list[float] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    augment: str = ""  # the augmentation training used
    task: str = DEFAULT_TASK
    score: float | None = None  # None only in files from before tasks: then it is test_acc
    score_name: str = "accuracy"  # "accuracy" (a fraction) or "PSNR" (dB)
    ssim: float | None = None
    test_loss: float | None = None  # the task's loss on the test set at the end (None in files from before it)
    input_psnr: float | None = None
    input_ssim: float | None = None
    # A budget run's check of what ships against its limits (cdprune.deploy.budget.BudgetCheck), added after training.
    budget_check: dict | None = None
    effective_lr: float | None = None  # the peak LR training used (settings' lr scaled to the batch); None: older files
    # How much the test score rose in the last epoch, and whether that stays within the task's
    # `Score.max_last_gain` (None: a one-epoch run, or a file from before the check).
    last_epoch_gain: float | None = None
    converged: bool | None = None

    def __post_init__(self):
        if self.score is None:  # a file from before tasks: a classifier's
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


def planner_settings(plan: PruningPlan) -> dict:
    """The planner settings a plan was made with, as runs and comparisons record them."""
    return {"step": plan.step, "floor": plan.floor, "round_to": plan.round_to}


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


def _fits(value, kind: str) -> bool:
    """Whether a JSON value fits one annotation ("int", "float", "list[int]", "None", …); bools are not numbers."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"None": value is None, "int": number and isinstance(value, int),
            "float": number and math.isfinite(value), "str": isinstance(value, str),
            "dict": isinstance(value, dict), "list": isinstance(value, (list, tuple)),
            "bool": isinstance(value, bool)}.get(kind.split("[")[0], True)


def check_fields(record, what: str, fix: str = "", only: set[str] | None = None) -> None:
    """Refuse a record whose fields hold the wrong JSON types (a hand-edited or damaged file, a bad API call)."""
    for f in fields(record):
        value, kinds = getattr(record, f.name), str(f.type).replace(" ", "").split("|")
        if (only is None or f.name in only) and not any(_fits(value, k) for k in kinds):
            raise CdpruneError(f"{what}: {f.name} is {value!r}, not {' or '.join(kinds)}" + (f": {fix}" if fix else ""))
