"""The base of every task, and the scores tasks report (docs/design.md, "Tasks").

A task is one class: its settings are the instance's fields, everything else (loss, optimiser,
scores and their units, history columns, report lines, the exported output's name) is the
class's. Training, reporting and deployment ask the task; none of them branches on its name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from ..complexity import run_forward
from ..errors import CdpruneError

# The task settings a run records (RunSettings fields, run.json); a task takes `loss` and those of
# the others it names in `options`, and records None for the rest.
RUN_OPTIONS = ("noise", "scale", "loss")


@dataclass(frozen=True)
class Score:
    """A figure a task reports: how records name it and how reports show it.

    `key` names its columns (`test_<key>` in history.csv and sweep.csv, `<key>_mean` in compare.csv)
    and a record's field for an extra score; values are recorded as they are and shown times `scale`
    in `unit` (accuracy: a fraction shown in %). `delta_unit` is the unit of a difference (pt for %).
    """

    name: str  # "accuracy", "PSNR": what records call it (`score_name`) and reports print
    key: str  # "acc", "psnr"
    unit: str = ""  # "%", "dB", "" for a plain number
    scale: float = 1.0
    digits: int = 2
    delta_unit: str = ""  # "" : the unit itself
    abbrev: str = ""  # the chart legend's short name; "": `name`
    # A run whose headline rose by more than this in its last epoch is flagged "not converged" (same scale as
    # the values: 0.01 is 1 pt of accuracy).
    max_last_gain: float = 0.0

    def _number(self, value: float, sign: str = "") -> str:
        return f"{self.scale * value:{sign}.{self.digits}f}"

    def _unit(self, unit: str) -> str:
        return "" if not unit else unit if unit == "%" else f" {unit}"  # "12.34%", "20.00 dB"

    def text(self, value: float | None) -> str:
        """A value in its unit: '91.25%', '27.40 dB', '0.8123'; '-' for none."""
        return "-" if value is None else self._number(value) + self._unit(self.unit)

    def spread(self, mean: float, std: float) -> str:
        """A mean ± std over seeds: '91.25 ± 0.31%'."""
        return f"{self._number(mean)} ± {self._number(std)}{self._unit(self.unit)}"

    def delta(self, difference: float) -> str:
        """A difference between two values: '+1.20 pt', '-0.35 dB', '+0.0120'."""
        return self._number(difference, "+") + self._unit(self.delta_unit or self.unit)

    @property
    def label(self) -> str:
        """The row or column of a run's figure: 'test accuracy'."""
        return f"test {self.name}"

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def legend(self, value: float) -> str:
        return f"{self.abbrev or self.name} {self.text(value)}"


@dataclass(frozen=True)
class Task:
    """What a run trains the network to do. Subclass it, set the class attributes, give `loss_of`,
    `score_sum` and `check_output`, and register the class (`register_task`); `create` builds it.

    The instance holds the task's settings (`loss`, and in subclasses the `options` they take);
    `__post_init__` checks them, so a Task is valid once built.
    """

    loss: str | None = None  # one of `losses`; None: the first

    name: ClassVar[str]
    title: ClassVar[str]
    losses: ClassVar[tuple[str, ...]]  # the first is the default
    options: ClassVar[tuple[str, ...]] = ()  # the other RUN_OPTIONS this task takes
    optimizer: ClassVar[str] = "sgd"  # "sgd" (Nesterov momentum) or "adam"; see make_optimizer
    default_lr: ClassVar[float] = 0.05  # at `reference_batch`
    reference_batch: ClassVar[int] = 128  # the batch size a run's lr is given for (see `scaled_lr`)
    # The label smoothing a run trains with by default; None: the task has no labels to smooth and refuses any.
    default_label_smoothing: ClassVar[float | None] = None
    output_name: ClassVar[str]  # the exported model's output
    score: ClassVar[Score]  # the headline figure
    extra_scores: ClassVar[tuple[Score, ...]] = ()  # also taken on the test set; their keys are record fields
    # Rows a run report adds after the scores: (label, RunMetrics field, how it is shown).
    reference_rows: ClassVar[tuple[tuple[str, str, Score], ...]] = ()
    named_in_titles: ClassVar[bool] = True  # the default task goes unnamed in titles and folder names
    scores_exports: ClassVar[bool] = False  # eval --onnx and export --int8 can score its exported files
    shows_samples: ClassVar[bool] = False  # eval --samples can write its inputs, outputs and targets as images
    distils: ClassVar[bool] = False  # gives distill_loss: --distill can train it against a teacher run

    def __post_init__(self):
        if self.loss is None:
            object.__setattr__(self, "loss", self.losses[0])
        elif self.loss not in self.losses:
            raise CdpruneError(f"unknown loss {self.loss!r} for task {self.name}", "choose one of "
                               f"{', '.join(self.losses)} (--loss)")

    @property
    def score_name(self) -> str:
        return self.score.name

    def settings(self) -> dict:
        """The settings as plain values (what a run records and what resume compares)."""
        return {"task": self.name, **{k: getattr(self, k, None) for k in RUN_OPTIONS}}

    def describe(self) -> str:
        """One phrase for reports: 'denoise (Gaussian noise σ = 25 on 0–255, MSE loss)'."""
        return self.name

    def report_note(self) -> str:
        """Sentences the Markdown reports add about how the task scores (ending in a space; '' for none)."""
        return ""

    # ---- the model ----------------------------------------------------------------------------
    def check_model(self, model: nn.Module, input_shape, num_classes: int | None) -> None:
        """Refuse, in one line, a model whose output does not fit the task (one forward pass on zeros)."""
        output = run_forward(model, tuple(input_shape))
        self.check_output(tuple(output.shape[1:]) if torch.is_tensor(output) else None, tuple(input_shape),
                          num_classes)

    def check_output(self, shape, input_shape, num_classes: int | None = None) -> None:
        """`shape` is one sample's output shape (None: not a tensor); a CdpruneError if it does not fit."""
        raise NotImplementedError

    # ---- data ---------------------------------------------------------------------------------
    def wrap(self, dataset: Dataset, train: bool) -> Dataset:
        """The (input, target) items the task trains on, made from a dataset of cdprune.data (as it is by default)."""
        return dataset

    def data_info(self, info):
        """The facts of the data the network sees (the data's own by default)."""
        return info

    def check_data(self, info, data: str) -> None:
        """Refuse data this task cannot learn from (`info`: the facts `data_info` gives, `data`: its name)."""

    # ---- training and scores ------------------------------------------------------------------
    def loss_of(self, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The training loss; reduction "sum" adds up the per-sample losses, "mean" averages them. A batch
        that does not fit the task is a CdpruneError."""
        raise NotImplementedError

    def score_sum(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The headline score summed over the batch."""
        raise NotImplementedError

    def extra_sums(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each extra score (by key) summed over the batch."""
        return {}

    def distill_loss(self, output: torch.Tensor, target: torch.Tensor, teacher_output: torch.Tensor, weight: float,
                     temperature: float) -> torch.Tensor:
        """The training loss against a teacher's outputs as well as the targets, a mean over the batch: `weight`
        is the teacher's share α, `temperature` the softening T of tasks that soften (docs/design.md,
        "Inheriting weights and distillation")."""
        raise CdpruneError(f"task {self.name} does not learn from a teacher", "drop --distill")

    def reference_scores(self, test_set: Dataset) -> dict:
        """Figures of the test set without a network, as RunMetrics fields (see `reference_rows`)."""
        return {}

    def training_loss(self, output: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """The loss the optimiser minimises: `loss_of` (mean), label-smoothed where the task smooths labels.
        Evaluation always uses `loss_of` itself, so test losses stay comparable whatever the smoothing."""
        self.check_label_smoothing(label_smoothing)
        return self.loss_of(output, target)

    def check_label_smoothing(self, value: float) -> None:
        """Refuse label smoothing in a task without labels to smooth."""
        if value and self.default_label_smoothing is None:
            raise CdpruneError(f"label smoothing (--label-smoothing) applies to class labels, not to task {self.name}",
                               "drop it or use --label-smoothing 0")

    def scaled_lr(self, lr: float, batch_size: int) -> float:
        """The LR a run trains with when `lr` is given for `reference_batch`: scaled linearly with the batch for
        SGD (lr × batch / reference, Goyal et al. 2017), by its square root for Adam (Malladi et al. 2022)."""
        ratio = batch_size / self.reference_batch
        return lr * (math.sqrt(ratio) if self.optimizer == "adam" else ratio)

    def make_optimizer(self, params, config) -> torch.optim.Optimizer:
        """The optimiser for `config` (lr, momentum, weight_decay, nesterov of a TrainConfig). `params` may be
        parameter groups (`train.parameter_groups`): a group's own weight_decay then overrides the config's."""
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.nesterov)

    # ---- records ------------------------------------------------------------------------------
    def history_columns(self) -> list[str]:
        """history.csv's header: the loop's columns around this task's scores."""
        return ["epoch", "lr", "train_loss", f"train_{self.score.key}", "test_loss", f"test_{self.score.key}",
                *(f"test_{s.key}" for s in self.extra_scores), "train_time_s", "epoch_time_s"]

    def epoch_scores(self, train_score: float, test_score: float, test_extras: dict | None) -> dict:
        """One epoch's score columns of history.csv, by name."""
        return {f"train_{self.score.key}": train_score, f"test_{self.score.key}": test_score,
                **{f"test_{key}": value for key, value in (test_extras or {}).items()}}

    def accuracy(self, value: float | None) -> float | None:
        """`value` where the headline is an accuracy, else None: the fields that records kept from before
        tasks (test_acc, acc_mean, acc_std) hold the score of accuracy tasks only."""
        return value if self.score.key == "acc" else None

    # ---- exported files -----------------------------------------------------------------------
    def exported_batch(self, dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the items `indices` of a split as an exported file is fed and scored: the
        inputs the network sees, without augmentation, and what `exported_scores` compares its outputs with
        (classify: normalised images and their labels). Also the images int8 files are calibrated on."""
        return dataset.plain(indices), dataset.targets[indices]

    def exported_scores(self, output, targets) -> tuple[float, float]:
        """(loss, headline score) summed over a batch of an exported model's outputs (numpy) and their
        targets (numpy, from `exported_batch`), for tasks that `scores_exports`: what eval --onnx and
        export --int8 compare."""
        raise NotImplementedError

    def sample_images(self, inputs: torch.Tensor, outputs: torch.Tensor,
                      targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pictures of a batch that `--samples` writes, by name (each N×C×H×W on the [0, 1] scale), for
        tasks that `shows_samples`."""
        raise NotImplementedError
