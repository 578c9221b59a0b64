"""Pruning methods behind one interface: each trains one run directory for one seed.

The complexity-driven modes and the baselines they are compared against are
registered here; adding a method is one function and one `@method` line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import models
from .data import dataset_info
from .errors import CdpruneError
from .pruning import MODES, make_plan
from .pruning.baselines import l1_plan, magnitude_plan, uniform_plan
from .runs import RunMetrics, RunSettings, load_run, train_run

FINETUNE_EPOCH_FRACTION = 0.5  # fine-tuning after ranking gets half the epochs…
FINETUNE_LR_FACTOR = 0.1  # …at a tenth of the learning rate (Li et al. 2017 fine-tune at a low rate)


@dataclass(frozen=True)
class Job:
    """One method, one seed: where to write, what to train, which reduction to reach."""

    root: Path  # the seed's folder; the run goes to root / method name
    settings: RunSettings
    target: float
    metric: str  # the metric every method reduces by `target`
    progress: bool = True
    download: bool = False

    def train(self, name: str, pruning=None, **kwargs) -> RunMetrics:
        return train_run(self.root / name, self.settings, pruning, resume=True, download=self.download,
                         progress=self.progress, method=name, **kwargs)

    def base_model(self):
        info = dataset_info(self.settings.data)
        return models.create(self.settings.model, num_classes=info.num_classes, in_channels=info.input_shape[0]), \
            info.input_shape


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    run: Callable[[Job], RunMetrics]
    needs_dense: bool = False  # starts from the trained dense model (train → rank → prune → fine-tune)


METHODS: dict[str, Method] = {}


def method(name: str, title: str, needs_dense: bool = False):
    def add(fn: Callable[[Job], RunMetrics]):
        METHODS[name] = Method(name, title, fn, needs_dense)
        return fn
    return add


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise CdpruneError(f"unknown method '{name}': choose from {', '.join(METHODS)}")
    return METHODS[name]


@method("dense", "unpruned model, trained from scratch")
def _dense(job: Job) -> RunMetrics:
    return job.train("dense")


def _sampled(mode: str):
    def run(job: Job) -> RunMetrics:
        model, shape = job.base_model()
        return job.train(mode, make_plan(model, shape, mode, job.target, target_metric=job.metric, seed=job.settings.seed))
    return run


for _mode in MODES.values():
    method(_mode.name, f"{_mode.title}, trained from scratch")(_sampled(_mode.name))


@method("uniform", "same fraction of every unit at random, trained from scratch")
def _uniform(job: Job) -> RunMetrics:
    model, shape = job.base_model()
    return job.train("uniform", uniform_plan(model, shape, job.target, job.metric, seed=job.settings.seed))


def _ranked(name: str, make_plan):
    def run(job: Job) -> RunMetrics:
        dense_dir = job.root / "dense"
        _dense(job)  # reused when this seed's dense run is already finished
        trained, _ = load_run(dense_dir)
        shape = dataset_info(job.settings.data).input_shape
        finetune = replace(job.settings, epochs=max(1, math.ceil(job.settings.epochs * FINETUNE_EPOCH_FRACTION)),
                           lr=job.settings.lr * FINETUNE_LR_FACTOR)
        pruning = make_plan(trained, shape, job.target, job.metric)
        return train_run(job.root / name, finetune, pruning, resume=True, download=job.download,
                         progress=job.progress, init_from=dense_dir, method=name)
    return run


method("l1", "Li et al. 2017: train, prune smallest-L1 filters per layer, fine-tune", needs_dense=True)(
    _ranked("l1", l1_plan))
method("tp-magnitude", "torch-pruning group magnitude, global ranking, then fine-tune", needs_dense=True)(
    _ranked("tp-magnitude", magnitude_plan))
