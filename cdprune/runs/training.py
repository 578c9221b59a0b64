"""Train → measure: one training run written to its run directory (docs/design.md, "Run directory").

Everything is checked before the first byte is written; the model is rebuilt from the registry,
the plan and the weights, and no file is ever unpickled.
"""
from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .. import distributed, models
from ..complexity import architecture_id, profile
from ..errors import CdpruneError
from ..measure import estimate_energy, measure_latency
from ..pruning import PruningPlan
from ..storage import (
    atomic_write_json,
    load_weights,
    lock_directory,
    remove_stale_temps,
    save_weights,
)
from ..train import CHECKPOINT_NAME, TrainConfig, convergence, train
from .guard import check_checkpoint, guard_directory
from .inherit import inherit, load_teacher, with_digests
from .loading import pruned_model, read_metrics
from .naming import plan_run_name
from .records import (
    METRICS_FILE,
    PLAN_FILE,
    SETTINGS_FILE,
    TRAINING_PASSES,
    WEIGHTS_FILE,
    RunMetrics,
    RunSettings,
    planner_settings,
)


def train_run(out: str | Path, settings: RunSettings, plan: PruningPlan | None = None, *, resume: bool = False,
              download: bool = False, progress: bool = True, init_from: str | Path | None = None,
              method: str | None = None, model: torch.nn.Module | None = None,
              datasets: tuple[Dataset, Dataset] | None = None) -> RunMetrics:
    """Train `settings.model` (pruned by `plan`, if given) from scratch and write the run directory `out`.

    init_from: a finished dense run whose trained weights start the model instead of a fresh
        initialisation (fine-tuning after ranking); its training cost is counted as pre-training.
        `settings.init` does the same for a user's run or weights file, and `settings.keep` says which
        inherited filters a pruned unit keeps; `settings.distill` names a teacher run (see inherit.py).
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
    settings = with_digests(settings.check())
    if settings.init is not None and init_from is not None:
        raise CdpruneError("init_from and settings.init both name the weights to start from", "give one")
    digest = plan.to_dict()["digest"] if plan is not None else None
    if guard_directory(out, settings, digest, resume) == "finished":
        return read_metrics(out)

    task = settings.make_task()
    if datasets is not None:
        train_set, test_set = datasets
        info = getattr(train_set, "info", None)
        if info is None:
            raise CdpruneError("datasets must carry their facts (.info): wrap them with cdprune.data.from_dataset")
        train_set, test_set = task.wrap(train_set, train=True), task.wrap(test_set, train=False)
        task.check_data(task.data_info(info), settings.data)
    else:
        info = settings.dataset_info()
        task.check_data(task.data_info(info), settings.data)
        train_set, test_set = settings.load("train", download), settings.load("test", download)
    info = task.data_info(info)
    torch.manual_seed(settings.seed)  # the fresh initialisation is part of what the seed reproduces
    pretrained = read_metrics(init_from) if init_from is not None else None
    if isinstance(model, torch.nn.Module):
        base = copy.deepcopy(model)  # the caller's model stays as it was
    else:
        base = models.create(settings.model, info.num_classes, info.input_shape[0], settings.model_args)
    architecture = architecture_id(base)
    if pretrained is not None:
        base.load_state_dict(load_weights(Path(init_from) / WEIGHTS_FILE))
    if settings.init is not None:  # an --init run's training counts as pre-training, as init_from's does
        pretrained = inherit(base, settings, settings.model)
    model = pruned_model(base, plan, settings.model, info.input_shape, keep=settings.keep)
    # One forward pass on zeros: a classifier given an image task (or the reverse) fails here, in one line.
    task.check_model(model, info.input_shape, info.num_classes)
    config = settings.train_config(progress)
    if settings.distill is not None:
        config = replace(config, distill=load_teacher(settings, info, task))
    if resume:
        check_checkpoint(out, settings, len(train_set))
    if datasets is None:
        _note_short_subsets(settings, train_set, test_set)  # once every check has passed

    main = distributed.from_environment().is_main
    # Only rank 0 writes, so only rank 0 takes the directory's lock.
    with lock_directory(out) if main else contextlib.nullcontext():
        if main:
            # Under the lock: another process may have finished or started this run meanwhile.
            guard_directory(out, settings, digest, resume)
            remove_stale_temps(out)
            atomic_write_json(out / SETTINGS_FILE, {**asdict(settings), "plan_digest": digest})
            if plan is not None:
                plan.save(out / PLAN_FILE)
            else:
                (out / PLAN_FILE).unlink(missing_ok=True)  # left by a start that never finished an epoch
        metrics = _train_and_measure(out, settings, plan, model, info, train_set, test_set, resume, config,
                                     pretrained, method, architecture)
    return metrics


def _note_short_subsets(settings: RunSettings, train_set: Dataset, test_set: Dataset) -> None:
    """Say so when a subset asks for more images than its split holds: the run uses them all."""
    for split, subset, dataset in (("train", settings.train_subset, train_set), ("test", settings.test_subset, test_set)):
        if subset is not None and subset > len(dataset) and distributed.from_environment().is_main:
            print(f"cdprune: note: {split}_subset (--{split}-subset) {subset} is more than the {len(dataset)} images of "
                  f"the {split} split of {settings.data}: the run uses all {len(dataset)}", file=sys.stderr)


def _train_and_measure(out: Path, settings: RunSettings, plan, model, info, train_set, test_set, resume: bool,
                       config: TrainConfig, pretrained, method, architecture: str) -> RunMetrics:
    result = train(model, train_set, test_set, config, out, resume=resume)
    if not distributed.from_environment().is_main:
        return RunMetrics.from_dict(distributed.share_from_main(None))
    save_weights(out / WEIGHTS_FILE, model.state_dict())

    model = model.cpu().to(memory_format=torch.contiguous_format)
    totals = profile(model, info.input_shape).totals
    base = plan.before if plan is not None else totals
    task = settings.make_task()
    gain, converged = convergence(result.history, task)
    metrics = RunMetrics(
        method=method or plan_run_name(plan), model=settings.model, data=settings.data,
        input_shape=list(info.input_shape),
        num_classes=info.num_classes, test_acc=result.test_acc, test_loss=result.history[-1].test_loss, params=totals.params, flops=totals.flops,
        memory_bytes=totals.memory_bytes, reduction=totals.reduction_from(base),
        latency_ms=0.0, latency={}, energy_mj=0.0, energy={}, train_time_s=result.train_time_s,
        train_flops=float(TRAINING_PASSES * totals.flops * len(train_set) * settings.epochs),
        epochs=settings.epochs, train_size=len(train_set), test_size=len(test_set), device=result.device,
        settings=asdict(settings),
        plan=None if plan is None else {"mode": plan.mode, "target": plan.target, "seed": plan.seed,
                                        **planner_settings(plan)},
        pretrain_time_s=pretrained.total_train_time_s if pretrained else 0.0,
        pretrain_flops=pretrained.total_train_flops if pretrained else 0.0,
        pretrain_epochs=pretrained.epochs + pretrained.pretrain_epochs if pretrained else 0, processes=result.processes,
        architecture=architecture, source_digest=models.source_digest(model), mean=list(info.mean), std=list(info.std), class_names=list(info.class_names),
        augment=getattr(train_set, "augment", None) or "none", task=task.name, score=result.test_score,
        score_name=task.score.name, effective_lr=settings.effective_lr, last_epoch_gain=gain, converged=converged,
        **result.test_extras, **task.reference_scores(test_set))
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


