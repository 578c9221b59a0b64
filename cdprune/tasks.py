"""Tasks: what a run trains the network to do (docs/design.md, "Tasks").

A task decides the targets, the loss, the metrics, what reports show and the name of the
exported model's output:

- `classify`: class labels, cross-entropy, accuracy (a fraction), SGD with Nesterov momentum. The
  default.
- `denoise`: additive Gaussian noise of standard deviation `noise` on the 0–255 scale (default
  25). Training images get fresh noise every time they are drawn; test image i always gets the
  same noise (a generator seeded by i), so the test PSNR is reproducible.
- `sr`: ×`scale` (2 or 4) super-resolution. The input is the image shrunk by bicubic
  interpolation (antialiased) and enlarged back to full size by bicubic interpolation, clamped to
  [0, 1]; the network restores the full-size image (as VDSR and DnCNN do).

Restoration tasks work on the [0, 1] pixel scale: inputs and targets are not normalised. Their
loss is MSE (or L1) per pixel against the clean image, their optimiser Adam (default lr 0.001),
and their metrics, PSNR (dB) and SSIM, are taken on the output clamped to [0, 1], per image, then
averaged over the images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from .complexity import run_forward
from .errors import CdpruneError

TEST_NOISE_SEED = 1_000_003  # test image i gets its noise from a generator seeded with this + i
MSE_FLOOR = 1e-10  # PSNR of an exact output: 100 dB, not infinity (JSON has no infinity)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


@dataclass(frozen=True)
class TaskKind:
    """What every task of one name shares: how it is labelled and what its settings may be."""

    name: str
    title: str
    score_name: str  # the headline metric: "accuracy" (a fraction) or "PSNR" (dB)
    output_name: str  # the exported model's output
    losses: tuple[str, ...]  # the first is the default
    restoration: bool
    optimizer: str  # "sgd" (Nesterov momentum) or "adam"
    default_lr: float


KINDS: dict[str, TaskKind] = {k.name: k for k in (
    TaskKind("classify", "image classification", "accuracy", "logits", ("cross-entropy",), False, "sgd", 0.05),
    # Restoration nets trained with SGD on a per-pixel loss learn very slowly at any step size that stays
    # stable (about +0.7 dB over the noisy input where Adam gains +4 dB in the same 100 steps on
    # Fashion-MNIST): they train with Adam, as DnCNN's public PyTorch implementations do.
    TaskKind("denoise", "Gaussian denoising", "PSNR", "image", ("mse", "l1"), True, "adam", 0.001),
    TaskKind("sr", "super-resolution", "PSNR", "image", ("mse", "l1"), True, "adam", 0.001),
)}
TASKS: tuple[str, ...] = tuple(KINDS)
DEFAULT_NOISE, SCALES = 25.0, (2, 4)


@dataclass(frozen=True)
class Task:
    """One task with its settings; build it with `create`, which checks them."""

    name: str = "classify"
    noise: float | None = None  # denoise: σ on the 0–255 scale
    scale: int | None = None  # sr: the down-sampling factor
    loss: str = "cross-entropy"

    @property
    def kind(self) -> TaskKind:
        return KINDS[self.name]

    @property
    def restoration(self) -> bool:
        return self.kind.restoration

    @property
    def score_name(self) -> str:
        return self.kind.score_name

    @property
    def output_name(self) -> str:
        return self.kind.output_name

    @property
    def optimizer(self) -> str:
        return self.kind.optimizer

    def settings(self) -> dict:
        """The settings as plain values (what a run records and what resume compares)."""
        return {"task": self.name, "noise": self.noise, "scale": self.scale, "loss": self.loss}

    def describe(self) -> str:
        """One phrase for reports: 'denoise (Gaussian noise σ = 25 on 0–255, MSE loss)'."""
        if self.name == "denoise":
            return f"denoise (Gaussian noise σ = {self.noise:g} on 0–255, {self.loss.upper()} loss)"
        if self.name == "sr":
            return f"sr (×{self.scale} super-resolution from bicubic down-sampling, {self.loss.upper()} loss)"
        return "classify"

    # ---- the model ----------------------------------------------------------------------------
    def check_model(self, model: nn.Module, input_shape, num_classes: int) -> None:
        """Refuse, in one line, a model whose output does not fit the task (one forward pass on zeros)."""
        output = run_forward(model, tuple(input_shape))
        self.check_output(tuple(output.shape[1:]) if torch.is_tensor(output) else None, tuple(input_shape),
                          num_classes)

    def check_output(self, shape, input_shape, num_classes: int | None = None) -> None:
        """`shape` is one sample's output shape (None: not a tensor)."""
        shown = "×".join(map(str, shape)) if shape else "not a tensor"
        if self.restoration:
            if shape != tuple(input_shape):
                raise CdpruneError(f"the model's output ({shown} per input) does not fit task {self.name}, which needs "
                                   f"an image of the input's shape {'×'.join(map(str, input_shape))}: use an "
                                   "image-to-image model such as dncnn or unet, or --task classify for a classifier")
        elif shape is None or len(shape) != 1 or (num_classes is not None and shape[0] != num_classes):
            want = f"{num_classes} class scores" if num_classes else "one score per class"
            raise CdpruneError(f"the model's output ({shown} per input) does not fit task classify, which needs {want}: "
                               "use a classifier, or --task denoise or sr for an image-to-image model")

    # ---- loss and metrics ---------------------------------------------------------------------
    def _check_batch(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if self.restoration:
            if target.is_floating_point() and output.shape == target.shape:
                return
            if not target.is_floating_point():
                raise CdpruneError(f"the data gives class labels, but task {self.name} needs clean images as "
                                   "targets: wrap the images with cdprune.tasks.create(...).wrap, or use --task classify")
            self.check_output(tuple(output.shape[1:]), tuple(target.shape[1:]))
        elif target.is_floating_point() or target.dim() != 1:
            raise CdpruneError(f"the data gives {'×'.join(map(str, target.shape[1:]))} images as targets, not class "
                               "labels: train it with --task denoise or sr (task=...), which take (input, clean image) "
                               "pairs")
        elif output.dim() != 2:
            self.check_output(tuple(output.shape[1:]), None)

    def loss_of(self, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The training loss; reduction "sum" adds up the per-sample losses (a restoration sample's loss is its
        mean over pixels), "mean" averages them. A batch that does not fit the task is a CdpruneError."""
        self._check_batch(output, target)
        output = output.float()
        if not self.restoration:
            return F.cross_entropy(output, target, reduction=reduction)
        error = F.mse_loss(output, target, reduction="none") if self.loss == "mse" else \
            F.l1_loss(output, target, reduction="none")
        per_sample = error.flatten(1).mean(1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    def score_sum(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The headline metric summed over the batch: correct predictions, or per-image PSNR (dB)."""
        if not self.restoration:
            return (output.argmax(1) == target).sum()
        return psnr(output.detach().float().clamp(0, 1), target).sum()

    def ssim_sum(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """Per-image SSIM summed over the batch (restoration only)."""
        if not self.restoration:
            return None
        return ssim(output.detach().float().clamp(0, 1), target).sum()

    # ---- data ---------------------------------------------------------------------------------
    def wrap(self, dataset: Dataset, train: bool) -> Dataset:
        """Restoration pairs (degraded image, clean image) made from a dataset of (image, label) items.

        `dataset` is one that `cdprune.data` hands out (it has `.info`, `pixels(i)` and its
        augmentation); labels are ignored. `train`: fresh noise per draw, else fixed per image.
        Classification data is returned as it is.
        """
        if not self.restoration:
            return dataset
        if isinstance(dataset, RestorationSet):
            return dataset
        if not all(hasattr(dataset, attr) for attr in ("info", "pixels", "transform")):
            raise CdpruneError(f"task {self.name} makes its pairs from a dataset of cdprune.data (load_dataset or "
                               f"from_dataset), not from a {type(dataset).__name__}")
        return RestorationSet(dataset, self, train)

    def data_info(self, info):
        """The facts of the data the network sees: restoration inputs are on the [0, 1] scale, unnormalised."""
        if not self.restoration:
            return info
        c = info.input_shape[0]
        return replace(info, mean=(0.0,) * c, std=(1.0,) * c)

    def degrade(self, clean: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """The network's input for one clean image (C×H×W, [0, 1]); index None draws fresh noise from
        torch's global RNG (training), an index draws the noise fixed for that test image."""
        if self.name == "denoise":
            generator = None if index is None else torch.Generator().manual_seed(TEST_NOISE_SEED + index)
            noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
            return clean + noise * (self.noise / 255.0)
        if self.name == "sr":
            h, w = clean.shape[-2:]
            small = F.interpolate(clean[None], size=(max(1, h // self.scale), max(1, w // self.scale)), mode="bicubic",
                                  align_corners=False, antialias=True)
            return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        return clean


class RestorationSet(Dataset):
    """(degraded image, clean image) pairs from a dataset's images, on the [0, 1] scale (see `Task.wrap`).

    The base dataset's augmentation is applied to the clean image first, so input and target
    always show the same crop and flip.
    """

    def __init__(self, base, task: Task, train: bool):
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


def create(name: str = "classify", *, noise: float | None = None, scale: int | None = None,
           loss: str | None = None) -> Task:
    """A checked task: `noise` (denoise, σ on 0–255, default 25), `scale` (sr: 2 or 4, default 2),
    `loss` (restoration: "mse", the default, or "l1")."""
    if name not in KINDS:
        raise CdpruneError(f"unknown task {name!r}: choose one of {', '.join(TASKS)} (--task)")
    kind = KINDS[name]
    if noise is not None and name != "denoise":
        raise CdpruneError(f"noise (--noise) applies to task denoise, not {name}: drop it or add --task denoise")
    if scale is not None and name != "sr":
        raise CdpruneError(f"scale (--scale) applies to task sr, not {name}: drop it or add --task sr")
    if loss is not None and loss not in kind.losses:
        if not kind.restoration:
            raise CdpruneError(f"loss (--loss) {loss!r} does not apply to task classify, which trains with "
                               "cross-entropy: drop it, or choose --task denoise or sr")
        raise CdpruneError(f"unknown loss {loss!r} for task {name}: choose one of {', '.join(kind.losses)} (--loss)")
    if name == "denoise":
        noise = DEFAULT_NOISE if noise is None else noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (math.isfinite(noise) and noise > 0):
            raise CdpruneError(f"noise (--noise) must be a finite number > 0, the σ on the 0–255 scale, got {noise!r}")
        noise = float(noise)
    if name == "sr":
        scale = SCALES[0] if scale is None else scale
        if isinstance(scale, bool) or scale not in SCALES:
            raise CdpruneError(f"scale (--scale) must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
        scale = int(scale)
    return Task(name, noise, scale, loss or kind.losses[0])


CLASSIFY = Task()


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
