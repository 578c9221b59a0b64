"""Reading finished runs back: their records, their model (registry + plan + weights, never a pickle),
their data, and a re-evaluation (docs/design.md, "Run directory")."""
from __future__ import annotations

import copy
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .. import models
from ..complexity import architecture_id
from ..data import DATASETS
from ..errors import CdpruneError
from ..pruning import PruningPlan, apply_plan
from ..storage import (
    atomic_write_json,
    load_weights,
    lock_directory,
    read_json_object,
)
from ..train import evaluate
from .records import (
    METRICS_FILE,
    PLAN_FILE,
    SETTINGS_FILE,
    WEIGHTS_FILE,
    EvalResult,
    RunMetrics,
    RunSettings,
    check_fields,
)


def build_model(ref: str, num_classes: int, input_shape, plan: PruningPlan | None,
                model_args: dict | None = None) -> torch.nn.Module:
    """A fresh model from a reference the caller vouches for (see `models.resolve`), pruned by `plan` when given."""
    base = models.create(ref, num_classes=num_classes, in_channels=input_shape[0], model_args=model_args)
    return pruned_model(base, plan, ref, input_shape)


def pruned_model(base: torch.nn.Module, plan: PruningPlan | None, ref: str, input_shape,
                 keep: str | None = None) -> torch.nn.Module:
    """`base` pruned by `plan`, after checking that the plan was made for this model and input; `keep` as
    `apply_plan` takes it (which of a trained model's filters stay)."""
    if plan is None:
        return base
    if tuple(plan.input_shape) != tuple(input_shape):
        shape = ",".join(map(str, input_shape))
        raise CdpruneError(f"the plan was made for input {','.join(map(str, plan.input_shape))}, but the data is {shape}: "
                           f"make the plan for input_shape {shape} (cdprune prune --input {shape})")
    if plan.model is not None and plan.model != ref and architecture_id(base) != plan.architecture:
        raise CdpruneError(f"the plan was made for {plan.model}, not {ref}: make a plan for {ref} "
                           f"with 'cdprune prune {ref}'")
    return apply_plan(base, plan, keep)


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
    check_fields(metrics, f"metrics file {path}", fix="train the run again", only=names & set(data))
    return metrics


def record_budget_check(run_dir: str | Path, check: dict) -> RunMetrics:
    """Add a budget check to a finished run's metrics.json (atomically, under the run's lock); the other fields
    stay as they were."""
    with lock_directory(run_dir):
        metrics = replace(read_metrics(run_dir), budget_check=check)
        atomic_write_json(Path(run_dir) / METRICS_FILE, metrics.to_dict())
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
    check_fields(settings, f"run settings file {path}", fix="delete it and start the run over")
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
                               f"({exc.problem})", "pass the reference it was trained with", option="model") from None
    recorded = plan.architecture if plan is not None else metrics.architecture
    if recorded and architecture_id(base) != recorded:
        raise CdpruneError(f"'{ref}' with {model_args} does not build the model {run_dir} was trained with "
                           f"('{metrics.model}'): pass the reference and model arguments it was trained with")
    check_source(metrics, base, run_dir, allow_changed_source)
    model = pruned_model(base, plan, ref, metrics.input_shape)
    weights = load_weights(run_dir / WEIGHTS_FILE)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise CdpruneError(f"{run_dir / WEIGHTS_FILE} does not fit the architecture of this run's plan: "
                           "the files come from different runs; train the run again") from None
    return model, metrics


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
    extras = scores.extras or {}
    return EvalResult(test_acc=task.accuracy(scores.score), test_loss=scores.loss,
                      recorded_acc=metrics.test_acc, test_size=len(test_set), score=scores.score,
                      recorded_score=metrics.score, score_name=task.score.name, **extras,
                      **{f"recorded_{key}": getattr(metrics, key) for key in extras})


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
    check_fields(settings, f"metrics file {run_dir / METRICS_FILE}", fix="train the run again")
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


