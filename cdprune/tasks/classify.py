"""classify: class labels, cross-entropy, accuracy (a fraction), SGD with Nesterov momentum. The default task."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CdpruneError
from ._base import Score, Task
from ._registry import register_task

ACCURACY = Score("accuracy", "acc", unit="%", scale=100.0, delta_unit="pt", abbrev="acc", max_last_gain=0.01)


@register_task
class Classify(Task):
    name = "classify"
    title = "image classification"
    losses = ("cross-entropy",)
    optimizer = "sgd"
    default_lr = 0.05
    default_label_smoothing = 0.1
    output_name = "logits"
    score = ACCURACY
    named_in_titles = False
    scores_exports = True
    distils = True

    def check_output(self, shape, input_shape, num_classes: int | None = None) -> None:
        if shape is None or len(shape) != 1 or (num_classes is not None and shape[0] != num_classes):
            shown = "×".join(map(str, shape)) if shape else "not a tensor"
            want = f"{num_classes} class scores" if num_classes else "one score per class"
            raise CdpruneError(f"the model's output ({shown} per input) does not fit task {self.name}, which needs "
                               f"{want}", "use a classifier, or --task denoise or sr for an image-to-image model")

    def check_data(self, info, data: str) -> None:
        if info.num_classes < 2:  # every prediction would be right: a "100 %" classifier
            raise CdpruneError(f"{data} holds {info.num_classes} class ({', '.join(info.class_names)})",
                               "a classifier needs at least two; add a class, or train a restoration task "
                               "(--task denoise)")

    def _check_batch(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if target.is_floating_point() or target.dim() != 1:
            raise CdpruneError(f"the data gives {'×'.join(map(str, target.shape[1:]))} images as targets, not class "
                               "labels", "train it with --task denoise or sr (task=...), which take (input, clean image) "
                               "pairs")
        if output.dim() != 2:
            self.check_output(tuple(output.shape[1:]), None)

    def loss_of(self, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        self._check_batch(output, target)
        return F.cross_entropy(output.float(), target, reduction=reduction)

    def training_loss(self, output: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy against labels smoothed by `label_smoothing`: the true class gets 1 - s + s/K, every
        class s/K (K classes); with 0, the task's own `loss_of`."""
        if not label_smoothing:
            return self.loss_of(output, target)
        self._check_batch(output, target)
        return F.cross_entropy(output.float(), target, label_smoothing=label_smoothing)

    def distill_loss(self, output: torch.Tensor, target: torch.Tensor, teacher_output: torch.Tensor, weight: float,
                     temperature: float) -> torch.Tensor:
        """(1 − α)·CE(student, y) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T)), per sample, averaged
        (Hinton et al. 2015; T² keeps the soft term's gradients on the scale of the hard one's)."""
        self._check_batch(output, target)
        student = F.log_softmax(output.float() / temperature, dim=1)
        teacher = F.log_softmax(teacher_output.float() / temperature, dim=1)
        kl = F.kl_div(student, teacher, reduction="none", log_target=True).sum(1)
        hard = F.cross_entropy(output.float(), target, reduction="none")
        return ((1 - weight) * hard + weight * temperature ** 2 * kl).mean()

    def score_sum(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Correct predictions in the batch."""
        return (output.argmax(1) == target).sum()

    def exported_scores(self, output: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """(cross-entropy in nats, correct predictions), summed over the batch of logits."""
        logits = output.astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -float(log_probs[np.arange(len(labels)), labels].sum()), int((logits.argmax(axis=1) == labels).sum())
