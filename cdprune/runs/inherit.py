"""What a run starts from besides a fresh initialisation: trained weights (--init) and a teacher (--distill)
(docs/design.md, "Inheriting weights and distillation").

Both are checked, and their weights' digests recorded in the run's settings, before the first byte is
written; the weights are safetensors files, never unpickled.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .. import models
from ..complexity import architecture_id
from ..errors import CdpruneError
from ..storage import file_digest, load_weights
from ..train import Distillation
from .loading import load_run, read_metrics
from .records import PLAN_FILE, WEIGHTS_FILE, RunMetrics, RunSettings


def with_digests(settings: RunSettings) -> RunSettings:
    """`settings` with the digests of its --init weights and its teacher's weights filled in."""
    changes = {}
    if settings.init is not None:
        changes["init_digest"] = _digest_of(init_weights(settings.init)[0], settings.init_digest, "--init", settings.init)
    if settings.distill is not None:
        _finished(settings.distill, "--distill")
        weights = Path(settings.distill) / WEIGHTS_FILE
        changes["distill_digest"] = _digest_of(weights, settings.distill_digest, "--distill", settings.distill)
    return replace(settings, **changes) if changes else settings


def _digest_of(path: Path, stated: str | None, flag: str, source: str) -> str:
    digest = file_digest(path)
    if stated is not None and stated != digest:
        raise CdpruneError(f"the weights of {flag} {source} are not those the settings name ({stated}, now {digest})",
                           f"give {flag} the weights the run started from, or start a new run")
    return digest


def _finished(run_dir: str | Path, flag: str) -> RunMetrics:
    path = Path(run_dir)
    if not path.is_dir():
        raise CdpruneError(f"{flag} {run_dir}: no such run directory", "give the folder of a finished run")
    try:
        return read_metrics(path)
    except CdpruneError as exc:
        raise CdpruneError(f"{flag} {run_dir} is not a finished run ({exc.problem})",
                           "finish it first ('cdprune train ... --resume'), or give another run") from None


def init_weights(source: str | Path) -> tuple[Path, RunMetrics | None]:
    """The weights file --init names (a run directory's model.safetensors, or the file itself) and, for a run,
    its metrics. A pruned run is refused: its weights are not the dense model's."""
    path = Path(source)
    if path.is_dir():
        metrics = _finished(path, "--init")
        if (path / PLAN_FILE).exists():
            raise CdpruneError(f"--init {source} is a pruned run ({metrics.method}), whose weights are not the dense "
                               "model's", "give a dense run, or its model.safetensors")
        return path / WEIGHTS_FILE, metrics
    if not path.is_file():
        raise CdpruneError(f"--init {source}: no such run directory or weights file",
                           "give a finished dense run or a .safetensors file of the model's dense state dict")
    return path, None


def inherit(base: torch.nn.Module, settings: RunSettings, model_name: str) -> RunMetrics | None:
    """Load the weights --init names into the dense `base`; return the run's metrics when --init is a run (its
    training then counts as the method's pre-training). Anything that does not fit is refused in one line."""
    path, metrics = init_weights(settings.init)
    if metrics is not None and metrics.architecture and metrics.architecture != architecture_id(base):
        shape = "x".join(map(str, metrics.input_shape))
        raise CdpruneError(f"--init {settings.init} is a run of another architecture ({metrics.model}, "
                           f"{metrics.num_classes} classes, input {shape}) than this {model_name}",
                           "give a run of the same model, arguments and data")
    state = load_weights(path)
    mismatch = state_mismatch(state, base.state_dict())
    if mismatch:
        raise CdpruneError(f"--init {settings.init} does not fit {model_name}'s dense weights: {mismatch}",
                           "give weights of the same model with the same arguments (--model-args) and data (--data)")
    base.load_state_dict(state)
    return metrics


def state_mismatch(given: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """The first tensor where `given` differs from `expected` in name or shape, in words ('' when they fit)."""
    shape = lambda t: "×".join(map(str, t.shape)) or "scalar"
    for name, tensor in expected.items():
        if name not in given:
            return f"it lacks tensor {name} ({shape(tensor)})"
        if given[name].shape != tensor.shape:
            return f"tensor {name} is {shape(given[name])}, the model's is {shape(tensor)}"
    extra = [name for name in given if name not in expected]
    return f"it holds tensor {extra[0]}, which the model does not have" if extra else ""


def load_teacher(settings: RunSettings, info, task) -> Distillation:
    """The teacher run's trained model, checked against this run's task and data shape (eval mode, no grad)."""
    where = settings.distill
    metrics = _finished(where, "--distill")
    if metrics.task != task.name:
        raise CdpruneError(f"--distill {where} was trained for task {metrics.task}, this run for {task.name}",
                           "give a teacher run of the same task")
    if list(metrics.input_shape) != list(info.input_shape):
        raise CdpruneError(f"--distill {where} takes input {'x'.join(map(str, metrics.input_shape))}, this run's data "
                           f"is {'x'.join(map(str, info.input_shape))}", "give a teacher run trained on data of this shape")
    # A teacher of the user's own model is built from the reference this run names, which the user vouched for.
    ref = None if models.is_registered(metrics.model) or metrics.model != settings.model else settings.model
    teacher, _ = load_run(where, ref)
    try:
        task.check_model(teacher, info.input_shape, info.num_classes)
    except CdpruneError as exc:
        raise CdpruneError(f"--distill {where} does not fit this run's data: {exc.problem}",
                           "give a teacher run trained on the same classes") from None
    for p in teacher.parameters():
        p.requires_grad_(False)
    return Distillation(teacher.eval(), settings.distill_weight, settings.distill_temperature)
