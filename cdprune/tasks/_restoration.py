"""What the restoration tasks (denoise, sr) share: (degraded image, clean image) pairs on the [0, 1]
pixel scale, a per-pixel loss, Adam, and PSNR (dB) and SSIM as scores (docs/design.md, "Tasks").

Inputs and targets are not normalised. The loss is MSE (or L1) per pixel against the clean image;
PSNR and SSIM are taken on the output clamped to [0, 1], per image, then averaged over the images.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import CdpruneError
from ._base import Score, Task

MSE_FLOOR = 1e-10  # PSNR of an exact output: 100 dB, not infinity (JSON has no infinity)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
PSNR = Score("PSNR", "psnr", unit="dB", max_last_gain=0.2)
SSIM = Score("SSIM", "ssim", digits=4)


class RestorationTask(Task):
    """A task that restores the clean image from a degraded one; subclasses give `degrade` and `describe`."""

    losses = ("mse", "l1")
    # Restoration nets trained with SGD on a per-pixel loss learn very slowly at any step size that stays
    # stable (about +0.7 dB over the noisy input where Adam gains +4 dB in the same 100 steps on
    # Fashion-MNIST): they train with Adam, as DnCNN's public PyTorch implementations do.
    optimizer = "adam"
    default_lr = 0.001
    output_name = "image"
    score = PSNR
    extra_scores = (SSIM,)
    reference_rows = (("input PSNR (no network)", "input_psnr", PSNR),)
    scores_exports = True
    shows_samples = True
    distils = True

    def degrade(self, clean: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """The network's input for one clean image (C×H×W, [0, 1]); index None draws fresh noise from
        torch's global RNG (training), an index draws the noise fixed for that test image."""
        raise NotImplementedError

    def report_note(self) -> str:
        return (f"Task: {self.describe()}, Adam. PSNR and SSIM (11×11 Gaussian window, σ = 1.5) are taken per test "
                f"image on the [0, 1] scale with the output clamped to [0, 1], then averaged; the input PSNR scores "
                f"the degraded test images themselves. ")

    # ---- the model ----------------------------------------------------------------------------
    def check_output(self, shape, input_shape, num_classes: int | None = None) -> None:
        if shape != tuple(input_shape):
            shown = "×".join(map(str, shape)) if shape else "not a tensor"
            raise CdpruneError(f"the model's output ({shown} per input) does not fit task {self.name}, which needs "
                               f"an image of the input's shape {'×'.join(map(str, input_shape))}", "use an "
                               "image-to-image model such as dncnn or unet, or --task classify for a classifier")

    def _check_batch(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if target.is_floating_point() and output.shape == target.shape:
            return
        if not target.is_floating_point():
            raise CdpruneError(f"the data gives class labels, but task {self.name} needs clean images as "
                               "targets", "wrap the images with cdprune.tasks.create(...).wrap, or use --task classify")
        self.check_output(tuple(output.shape[1:]), tuple(target.shape[1:]))

    # ---- loss and scores ----------------------------------------------------------------------
    def loss_of(self, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """A sample's loss is its mean over pixels."""
        self._check_batch(output, target)
        output = output.float()
        error = F.mse_loss(output, target, reduction="none") if self.loss == "mse" else \
            F.l1_loss(output, target, reduction="none")
        per_sample = error.flatten(1).mean(1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    def distill_loss(self, output: torch.Tensor, target: torch.Tensor, teacher_output: torch.Tensor, weight: float,
                     temperature: float) -> torch.Tensor:
        """(1 − α)·loss(student, clean) + α·loss(student, teacher's output): the teacher's image is a second
        target (no softening: `temperature` is not used)."""
        return (1 - weight) * self.loss_of(output, target) + weight * self.loss_of(output, teacher_output.float())

    def score_sum(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image PSNR (dB), summed over the batch."""
        return psnr(output.detach().float().clamp(0, 1), target).sum()

    def extra_sums(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image SSIM, summed over the batch."""
        return {SSIM.key: ssim(output.detach().float().clamp(0, 1), target).sum()}

    def reference_scores(self, test_set: Dataset) -> dict:
        """The PSNR and SSIM of the degraded test inputs themselves: what the network has to improve on."""
        input_psnr, input_ssim = input_scores(test_set)
        return {"input_psnr": input_psnr, "input_ssim": input_ssim}

    def exported_scores(self, output, targets) -> tuple[float, float]:
        """(loss, PSNR in dB), each summed over the batch's images, as `loss_of` and `score_sum` take them."""
        output, targets = torch.from_numpy(np.asarray(output)), torch.from_numpy(np.asarray(targets))
        return self.loss_of(output, targets, reduction="sum").item(), self.score_sum(output, targets).item()

    def exported_batch(self, dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Degraded inputs and clean targets, without augmentation. A training split's images get the fixed
        degradation a test image of the same index gets, so the int8 calibration sees the same inputs every time."""
        fixed = self.wrap(dataset, train=False)
        if fixed.train:
            fixed = RestorationSet(fixed.base, fixed.task, train=False)
        pairs = [fixed[i] for i in indices.tolist()]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def sample_images(self, inputs: torch.Tensor, outputs: torch.Tensor,
                      targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The degraded input, the network's output and the clean target, each clamped to [0, 1]."""
        return {"input": inputs.clamp(0, 1), "output": outputs.float().clamp(0, 1), "target": targets.clamp(0, 1)}

    # ---- data ---------------------------------------------------------------------------------
    def wrap(self, dataset: Dataset, train: bool) -> Dataset:
        """Restoration pairs (degraded image, clean image) made from a dataset of (image, label) items.

        `dataset` is one that `cdprune.data` hands out (it has `.info`, `pixels(i)` and its
        augmentation); labels are ignored. `train`: fresh noise per draw, else fixed per image.
        """
        if isinstance(dataset, RestorationSet):
            return dataset
        if not all(hasattr(dataset, attr) for attr in ("info", "pixels", "transform")):
            raise CdpruneError(f"task {self.name} makes its pairs from a dataset of cdprune.data (load_dataset or "
                               f"from_dataset), not from a {type(dataset).__name__}")
        return RestorationSet(dataset, self, train)

    def data_info(self, info):
        """Restoration inputs are on the [0, 1] scale, unnormalised."""
        c = info.input_shape[0]
        return replace(info, mean=(0.0,) * c, std=(1.0,) * c)


class RestorationSet(Dataset):
    """(degraded image, clean image) pairs from a dataset's images, on the [0, 1] scale (see `Task.wrap`).

    The base dataset's augmentation is applied to the clean image first, so input and target
    always show the same crop and flip.
    """

    def __init__(self, base, task: RestorationTask, train: bool):
        self.base, self.task, self.train = base, task, train
        self.info = task.data_info(base.info)
        self.split = getattr(base, "split", "custom")
        self.augment = getattr(base, "augment", "none")

    def __len__(self) -> int:
        return len(self.base)

    @property
    def targets(self) -> torch.Tensor:
        return self.base.targets

    def clean(self, index: int) -> torch.Tensor:
        image = self.base.pixels(index)
        if self.train:
            image = self.base.transform(image)
        return image.to(torch.float32) / 255.0 if image.dtype == torch.uint8 else image.to(torch.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean = self.clean(index)
        return self.task.degrade(clean, None if self.train else index), clean


# ---- metrics -------------------------------------------------------------------------------------

def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image of a batch (N×C×H×W, [0, 1] scale): 10·log10(1 / MSE), MSE over the
    image's pixels and channels (floored at 1e-10, so an exact image scores 100 dB)."""
    if output.shape != target.shape or output.dim() < 2:
        raise CdpruneError(f"psnr needs two batches of the same shape, got {tuple(output.shape)} and "
                           f"{tuple(target.shape)}")
    mse = (output.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of each image of a batch (N×C×H×W, [0, 1] scale), as Wang, Bovik, Sheikh and Simoncelli 2004:
    an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, dynamic range 1, the statistics weighted by
    the window at every position where it fits inside the image, the map averaged over positions and
    channels. Images smaller than 11 pixels use the largest odd window that fits."""
    if output.shape != target.shape or output.dim() != 4:
        raise CdpruneError(f"ssim needs two N×C×H×W batches of the same shape, got {tuple(output.shape)} and "
                           f"{tuple(target.shape)}")
    n, c, h, w = output.shape
    size = min(SSIM_WINDOW, h, w)
    size -= 1 - size % 2  # odd, so the window has a centre
    g = _gaussian_window(size, SSIM_SIGMA).to(output.device)
    window = torch.outer(g, g).expand(c, 1, size, size)
    x, y = output.double(), target.double()

    def blur(z):
        return F.conv2d(z, window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    quality = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return quality.flatten(1).mean(1)


def input_scores(dataset: Dataset, batch_size: int = 256) -> tuple[float, float]:
    """Mean PSNR and SSIM of a restoration test set's inputs themselves (clamped to [0, 1]) against the
    clean images: what the network has to improve on."""
    total_psnr = total_ssim = 0.0
    for start in range(0, len(dataset), batch_size):
        pairs = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        degraded = torch.stack([p[0] for p in pairs]).clamp(0, 1)
        clean = torch.stack([p[1] for p in pairs])
        total_psnr += psnr(degraded, clean).sum().item()
        total_ssim += ssim(degraded, clean).sum().item()
    return total_psnr / len(dataset), total_ssim / len(dataset)
