"""In-memory image dataset and class-balanced subset selection."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import CdpruneError
from .info import DatasetInfo
from .transforms import AUGMENTATION, Normalize, random_crop_flip


class ImageDataset(Dataset):
    """All images of one split held as a single uint8 tensor (N, C, H, W).

    Item i is `(float32 tensor C x H x W, int label)`, normalised with the
    dataset's mean/std and, when `augment` is on, randomly cropped/flipped.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, info: DatasetInfo,
                 split: str, augment: bool):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"need one label per image, got {tuple(targets.shape)} for {images.shape[0]} images")
        self.images = images.contiguous()
        self.targets = targets.to(torch.int64)
        self.info = info
        self.split = split
        self.augment = augment
        self.pad, self.flip = AUGMENTATION[info.name]
        self.normalize = Normalize(info.mean, info.std)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        if self.augment:
            img = random_crop_flip(img, self.pad, self.flip)
        return self.normalize(img), int(self.targets[index])

    def __repr__(self) -> str:
        return (f"ImageDataset({self.info.name}, split={self.split}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])}, augment={self.augment})")


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised, un-augmented images (float32, N x C x H x W) and labels (int64, N) of `dataset`.

    `dataset` is one returned by `load_dataset`, or a `torch.utils.data.Subset`
    of one. Memory is 4 bytes per pixel (CIFAR-10 train: about 600 MB).
    """
    indices = None
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, ImageDataset):
        indices = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        dataset = dataset.dataset
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"as_tensors needs a dataset from load_dataset, got {type(dataset).__name__}")
    images, targets = dataset.images, dataset.targets
    if indices is not None:
        images, targets = images[indices], targets[indices]
    return dataset.normalize(images), targets.clone()


def balanced_subset(labels: np.ndarray, n: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices (sorted) of `n` examples spread evenly over the classes.

    Each class gets n // num_classes examples, the first n % num_classes
    classes one more; a class with too few examples gives all it has and the
    shortfall is taken round-robin from the others. Drawn with
    `numpy.random.default_rng(seed)`, so the same inputs give the same subset.
    """
    if n <= 0 or n < num_classes:
        raise CdpruneError(f"subset={n} is too small: use at least one example per class ({num_classes})")
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
