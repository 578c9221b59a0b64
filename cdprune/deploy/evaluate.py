"""Test an exported file (ONNX, ORT, ExecuTorch, LiteRT; fp32 or int8) on a run's test set through its runtime.

This is what the device will compute: the file, not the PyTorch model it came from. The images
are the run's test split, normalised as the run records (`RunMetrics.mean` / `std`). Which files
can be tested, and in which runtime, is the export-format table's (`formats.py`, `eval=True`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CdpruneError
from ..measure.runtimes import get_runtime
from ..records import Record
from ..runs import run_data
from .formats import eval_format
from ..tasks import CLASSIFY, DEFAULT_TASK, RUN_OPTIONS, Task, create, get_task, list_tasks

EVAL_BATCH = 256


@dataclass(frozen=True)
class OnnxEvalResult(Record):
    """An exported file tested on a run's test set.

    `score` is the task's headline figure (`score_name`: accuracy as a fraction, or PSNR in dB) and
    `recorded_score` the run's own, from its PyTorch model; `test_loss` is the task's loss per image
    (cross-entropy in nats, or the per-pixel MSE or L1). `test_acc` and `recorded_acc` are the same
    figures for classify runs, null for others.
    """

    path: str
    precision: str  # "fp32", or "int8" for a quantised file
    test_acc: float | None
    test_loss: float
    recorded_acc: float | None
    test_size: int
    score: float | None = None
    recorded_score: float | None = None
    score_name: str = "accuracy"
    runtime: str = "ONNX Runtime"  # the runtime that ran the file (its title)


def run_task(metrics) -> Task:
    """The task of a finished run (`RunMetrics`), with its recorded settings (noise, scale, loss)."""
    recorded = metrics.settings or {}
    return create(metrics.task or DEFAULT_TASK, **{key: recorded.get(key) for key in RUN_OPTIONS})


def open_exported(path: Path, run_dir, threads: int = 1):
    """(format row, runtime row, loaded file) of an exported file, in the runtime its suffix names; a missing,
    foreign or damaged file is one line."""
    if not path.is_file():
        raise CdpruneError(f"exported file {path} not found", f"export one with 'cdprune export {run_dir}'")
    fmt = eval_format(path)
    runtime = get_runtime(fmt.runtime)
    runtime.require()
    try:
        return fmt, runtime, runtime.load(str(path), threads)
    except Exception as exc:  # the runtime's own error types: a damaged or foreign file
        first = " ".join(str(exc).split())[:160]
        raise CdpruneError(f"{runtime.title} cannot load {path} ({first})",
                           "export it again with 'cdprune export'") from None


def evaluate_file(path: str | Path, dataset, runtime: str, batch: int = EVAL_BATCH,
                  threads: int | None = None, task: Task = CLASSIFY) -> tuple[float, float]:
    """(mean loss, mean score) of the exported file `path`, run in `runtime`, on `dataset` (a run's split as
    `run_data` gives it), fed and scored as `task` says (`exported_batch`, `exported_scores`): cross-entropy
    and accuracy for classify, the per-pixel loss and PSNR in dB for denoise and sr."""
    loaded = get_runtime(runtime).load(str(path), threads or torch.get_num_threads())
    loss, score = 0.0, 0.0
    for start in range(0, len(dataset), batch):
        inputs, targets = task.exported_batch(dataset, torch.arange(start, min(start + batch, len(dataset))))
        batch_loss, batch_score = task.exported_scores(loaded.run(inputs.numpy()), targets.numpy())
        loss += batch_loss
        score += batch_score
    return loss / len(dataset), score / len(dataset)


def eval_onnx(run_dir: str | Path, onnx_path: str | Path, data_dir: str | None = None,
              threads: int | None = None) -> OnnxEvalResult:
    """Test the ONNX file `onnx_path` (any export of the run, fp32 or int8) on the run's test set.

    data_dir: where the run's data lives now, when it moved. threads: ONNX Runtime's intra-op threads
    (default torch's thread count).
    """
    path = Path(onnx_path)
    fmt, runtime, loaded = open_exported(path, run_dir)
    test_set, metrics = run_data(run_dir, "test", data_dir)
    task = run_task(metrics)
    if not task.scores_exports:
        scored = " and ".join(n for n in list_tasks() if get_task(n).scores_exports)
        raise CdpruneError(f"--onnx evaluates {scored} runs; {run_dir} is a {metrics.task} run",
                           "use cdprune eval without --onnx")
    shape, output = loaded.input_shape, loaded.output_shape
    fits = shape == list(metrics.input_shape)
    if fits and all(isinstance(d, int) for d in output):  # a dimension the file leaves open fits any
        try:
            task.check_output(tuple(output), tuple(metrics.input_shape), metrics.num_classes)
        except CdpruneError:
            fits = False
    if not fits:
        raise CdpruneError(f"{path} takes inputs {'×'.join(map(str, shape))} and gives outputs "
                           f"{'×'.join(map(str, output))}, which do not fit {run_dir} ({task.name} on "
                           f"{'×'.join(map(str, metrics.input_shape))} images of {metrics.num_classes} classes)",
                           "evaluate a file exported from this run")
    del loaded
    loss, score = evaluate_file(path, test_set, runtime.name, threads=threads, task=task)
    precision = fmt.read_precision(path) if fmt.read_precision else "fp32"
    return OnnxEvalResult(path=str(path), precision=precision, test_acc=task.accuracy(score), test_loss=loss,
                          recorded_acc=metrics.test_acc, test_size=len(test_set), score=score,
                          recorded_score=metrics.score, score_name=task.score.name, runtime=runtime.title)
