"""Sample pictures of a restoration run: for the first N test images, the degraded input, the network's
output and the clean target as three 8-bit PNGs each (`cdprune eval RUN --samples N`), for looking at.

The pictures come from the task (`Task.sample_images`, for tasks that `shows_samples`); a classify run is
refused. The output is the run's PyTorch model's, or an exported file's (`onnx=`), so an int8 file's
artefacts can be seen too. Everything is checked and every PNG encoded before the first file is written;
each file is written atomically.
"""
from __future__ import annotations

import io
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import CdpruneError
from ..records import Record
from ..runs import load_run, read_metrics, run_data
from ..storage import atomic_write_bytes
from ..tasks import Task, get_task, list_tasks
from .evaluate import open_exported, run_task

SAMPLES_FOLDER = "samples"  # under the run directory, by default
PNG_MODES = {1: "L", 3: "RGB"}  # channels -> Pillow mode: PNG holds grey or RGB images


@dataclass(frozen=True)
class SamplesResult(Record):
    """The sample pictures written: test image i gives `<folder>/<i:04d>-<picture>.png` for each picture name."""

    folder: str
    indices: list  # the test images, by index in the run's test set
    pictures: list  # "input", "output", "target"
    files: list
    source: str  # "pytorch", or the exported file the outputs came from


def check_sample_count(count) -> int:
    """A count of samples: a whole number of at least 1."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise CdpruneError(f"samples (--samples) must be a whole number of at least 1, got {count!r}")
    return int(count)


def check_sample_task(task: Task, subject: str) -> None:
    """Refuse, in one line, a task that has no pictures to show (classify); `subject` ends in "task"
    ("RUN is a run of task", "this job trains task")."""
    if not task.shows_samples:
        shown = " and ".join(n for n in list_tasks() if get_task(n).shows_samples)
        raise CdpruneError(f"--samples writes the input, output and target images of {shown} runs; {subject} "
                           f"{task.name}, whose outputs are not images", "drop --samples")


def check_sample_fits(count: int, test_size: int, run: str | Path) -> None:
    """Refuse more samples than the run has test images."""
    if count > test_size:
        raise CdpruneError(f"--samples {count} asks for more pictures than the {test_size} test images of {run}",
                           f"ask for at most {test_size}")


def check_job_samples(settings, count, download: bool = False) -> int:
    """Refuse, before anything is trained, samples that the runs of `settings` (a RunSettings) could not write."""
    count = check_sample_count(count)
    check_sample_task(settings.make_task(), "this job trains task")
    test_set = settings.load("test", download)
    _check_channels(test_set.info.input_shape[0], settings.data)
    check_sample_fits(count, len(test_set), settings.data)
    return count


def write_samples(run_dir: str | Path, count: int, out: str | Path | None = None, *,
                  model: str | torch.nn.Module | None = None, onnx: str | Path | None = None,
                  data_dir: str | None = None, allow_changed_source: bool = False) -> SamplesResult:
    """Write the input, output and target of the first `count` test images of a restoration run as 8-bit
    PNGs into `out` (default RUN_DIR/samples), grey for one channel and RGB for three.

    model, allow_changed_source: as for `load_run`. onnx: take the outputs from this exported file (fp32
    or int8) instead of the PyTorch model. data_dir: where the run's data lives now, when it moved.
    """
    count = check_sample_count(count)
    metrics = read_metrics(run_dir)
    task = run_task(metrics)
    check_sample_task(task, f"{run_dir} is a run of task")
    _check_channels(metrics.input_shape[0], run_dir)
    folder = Path(out) if out is not None else Path(run_dir) / SAMPLES_FOLDER
    if folder.exists() and not folder.is_dir():
        raise CdpruneError(f"{folder} is a file, not a folder for the samples", "choose another (--samples-dir)")
    test_set, _ = run_data(run_dir, "test", data_dir)
    check_sample_fits(count, len(test_set), run_dir)
    predict, source = _predictor(run_dir, model, onnx, allow_changed_source)
    indices = torch.arange(count)
    inputs, targets = task.exported_batch(test_set, indices)
    pictures = task.sample_images(inputs, predict(inputs), targets)
    encoded = {folder / f"{i:04d}-{name}.png": _png(batch[row])
               for row, i in enumerate(indices.tolist()) for name, batch in pictures.items()}
    for path, data in encoded.items():
        atomic_write_bytes(path, data)
    return SamplesResult(folder=str(folder), indices=indices.tolist(), pictures=list(pictures),
                         files=[str(p) for p in encoded], source=source)


def _check_channels(channels: int, where) -> None:
    if channels not in PNG_MODES:
        raise CdpruneError(f"{where} has {channels}-channel images, which PNG cannot hold (1 or 3 channels)",
                           "drop --samples")


def _predictor(run_dir, model, onnx, allow_changed_source):
    """The function from a batch of inputs to the outputs, and what it runs."""
    if onnx is None:
        net = load_run(run_dir, model, allow_changed_source=allow_changed_source)[0].eval()

        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return net(x)

        return predict, "pytorch"
    path = Path(onnx)
    _, _, loaded = open_exported(path, run_dir)
    return (lambda x: torch.from_numpy(np.asarray(loaded.run(x.numpy())))), str(path)


def to_8bit(image: torch.Tensor) -> np.ndarray:
    """A C×H×W image on the [0, 1] scale as H×W (one channel) or H×W×3 bytes: round(255 · value)."""
    pixels = (image.double().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()


def _png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_8bit(image)).save(buffer, format="PNG")  # H×W bytes: grey (L), H×W×3: RGB
    return buffer.getvalue()
