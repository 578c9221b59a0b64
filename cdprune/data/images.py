"""Image datasets (in memory, or decoded per item), class-balanced subsets and channel statistics."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import CdpruneError
from .info import DatasetInfo
from .transforms import Augment, Normalize


class ImageSet(Dataset):
    """What every dataset cdprune hands out has: `.info`, `.targets` (int64, N), `.split`,
    `.augment` (the augmentation mode its items get) and `len()`.

    Item i is `(float32 tensor C x H x W, int label)`: `pixels(i)` augmented, then normalised
    with `info.mean` / `info.std`. Subclasses provide `pixels(i)` (uint8, or float in [0, 1]).
    """

    info: DatasetInfo
    split: str

    def __init__(self, info: DatasetInfo, split: str, augment: str):
        self.info = info
        self.split = split
        self.transform = Augment(augment, info.input_shape)
        self.augment = self.transform.mode
        self.normalize = Normalize(info.mean, info.std)

    def pixels(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def label(self, index: int) -> int:
        return int(self.targets[index])

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.transform(self.pixels(index))), self.label(index)

    def plain(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalised, un-augmented images (float32, n x C x H x W) of `indices`."""
        out = torch.empty((len(indices), *self.info.input_shape), dtype=torch.float32)
        for row, i in enumerate(indices.tolist()):
            out[row] = self.normalize(self.pixels(i))
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.info.name}, split={self.split}, n={len(self)}, "
                f"shape={tuple(self.info.input_shape)}, augment={self.augment})")


class ImageDataset(ImageSet):
    """All images of one split held as a single uint8 tensor (N, C, H, W)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, info: DatasetInfo,
                 split: str, augment: str):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"need one label per image, got {tuple(targets.shape)} for {images.shape[0]} images")
        if tuple(images.shape[1:]) != tuple(info.input_shape):
            raise ValueError(f"images are {tuple(images.shape[1:])}, info says {tuple(info.input_shape)}")
        super().__init__(info, split, augment)
        self.images = images.contiguous()
        self.targets = targets.to(torch.int64)

    def pixels(self, index: int) -> torch.Tensor:
        return self.images[index]

    def plain(self, indices: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.images[indices])


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised, un-augmented images (float32, N x C x H x W) and labels (int64, N) of `dataset`.

    `dataset` is one returned by `load_dataset` or `from_dataset`, or a
    `torch.utils.data.Subset` of one. Memory is 4 bytes per pixel (CIFAR-10
    train: about 600 MB); a folder dataset too large to cache is decoded here.
    """
    indices = None
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, ImageSet):
        indices = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        dataset = dataset.dataset
    if not isinstance(dataset, ImageSet):
        raise TypeError(f"as_tensors needs a dataset from load_dataset or from_dataset, got {type(dataset).__name__}")
    if indices is None:
        indices = torch.arange(len(dataset))
    return dataset.plain(indices), dataset.targets[indices].clone()


def balanced_subset(labels: np.ndarray, n: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices (sorted) of `n` examples spread evenly over the classes.

    Each class gets n // num_classes examples, the first n % num_classes
    classes one more; a class with too few examples gives all it has and the
    shortfall is taken round-robin from the others. Drawn with
    `numpy.random.default_rng(seed)`, so the same inputs give the same subset.
    """
    if n <= 0 or n < num_classes:
        raise CdpruneError(f"subset={n} is too small", f"use at least one example per class ({num_classes})")
    labels = np.asarray(labels, dtype=np.int64)
    if n >= labels.size:
        return np.arange(labels.size)
    rng = np.random.default_rng(seed)
    # Rank every example within its class in a random order; taking the n
    # smallest (rank, class) pairs is a round-robin over classes.
    rank = np.full(labels.size, labels.size, dtype=np.int64)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        rank[members[rng.permutation(members.size)]] = np.arange(members.size)
    order = np.lexsort((labels, rank))
    return np.sort(order[:n])


class ChannelStats:
    """Per-channel mean and standard deviation of uint8 images, accumulated batch by batch.

    Exact: it counts how often each of the 256 values occurs per channel, so the
    result does not depend on how the images are batched.
    """

    def __init__(self, channels: int):
        self.counts = torch.zeros(channels, 256, dtype=torch.int64)

    def add(self, images: torch.Tensor) -> None:
        """`images` is uint8 (..., C, H, W) with this object's C."""
        flat = images.movedim(-3, 0).reshape(self.counts.shape[0], -1)
        for c in range(flat.shape[0]):
            self.counts[c] += torch.bincount(flat[c], minlength=256)

    def result(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) on the [0, 1] scale; a constant channel gets std 1 so that normalising
        only centres it instead of dividing by zero."""
        counts = self.counts.to(torch.float64)
        values = torch.arange(256, dtype=torch.float64) / 255.0
        n = counts.sum(dim=1)
        mean = (counts * values).sum(dim=1) / n
        var = (counts * (values - mean[:, None]) ** 2).sum(dim=1) / n
        std = var.sqrt()
        return (tuple(float(m) for m in mean),
                tuple(float(s) if s > 0 else 1.0 for s in std))
