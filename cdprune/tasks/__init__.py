"""Tasks: what a run trains the network to do (docs/design.md, "Tasks").

A task decides the targets, the loss, the optimiser, the scores and their units, the columns of
history.csv, what reports show and the name of the exported model's output. One file per task,
each registered by `register_task`; `create(name, …)` builds a checked one.

- `classify` (classify.py): class labels, cross-entropy, accuracy, SGD. The default.
- `denoise` (denoise.py) and `sr` (sr.py): image restoration on the [0, 1] scale, MSE or L1, Adam,
  PSNR and SSIM; what they share is in _restoration.py.
"""
from ._base import RUN_OPTIONS, Score, Task
from ._registry import DEFAULT_TASK, by_score, create, get_task, list_tasks, register_task
from ._restoration import MSE_FLOOR, PSNR, SSIM, RestorationSet, RestorationTask, input_scores, psnr, ssim
from .classify import ACCURACY, Classify
from .denoise import DEFAULT_NOISE, TEST_NOISE_SEED, Denoise
from .sr import SCALES, SuperResolution

CLASSIFY = create(DEFAULT_TASK)
TASKS: tuple[str, ...] = tuple(list_tasks())  # the built-in tasks; list_tasks() also has those registered since

__all__ = ["ACCURACY", "CLASSIFY", "Classify", "DEFAULT_NOISE", "DEFAULT_TASK", "Denoise", "MSE_FLOOR", "PSNR",
           "RUN_OPTIONS", "RestorationSet", "RestorationTask", "SCALES", "SSIM", "Score", "SuperResolution", "TASKS",
           "TEST_NOISE_SEED", "Task", "by_score", "create", "get_task", "input_scores", "list_tasks", "psnr",
           "register_task", "ssim"]
