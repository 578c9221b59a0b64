"""Datasets as in-memory tensors: CIFAR-10/100, Fashion-MNIST, MNIST and a synthetic set.

    >>> from cdprune import data
    >>> train = data.load_dataset("cifar10", "train", "~/datasets", download=True)
    >>> x, y = train[0]            # float32 3 x 32 x 32 (normalised), int label
    >>> train.info.num_classes, len(train), train.targets.shape
    (10, 50000, torch.Size([50000]))
    >>> images, labels = data.as_tensors(data.load_dataset("cifar10", "test", "~/datasets"))
"""
from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset

from ..errors import CdpruneError
from .cifar import load_cifar
from .idx import load_idx
from .images import ImageDataset, as_tensors, balanced_subset
from .info import DATASETS, DatasetInfo, dataset_info
from .synthetic import make_synthetic

__all__ = ["DATASETS", "DatasetInfo", "as_tensors", "dataset_info", "load_dataset"]

SPLITS = ("train", "test")


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                 augment: bool | None = None, download: bool = False, subset: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load one split of dataset `name` into memory.

    Items are `(float32 C x H x W normalised with the dataset's mean/std, int label)`;
    the dataset also has `.info`, `.targets` (int64, N) and `len()`.

    augment: random crop (+ flip where it makes sense) per item; None means on
        for "train", off for "test". Randomness comes from torch's global RNG.
    download: fetch CIFAR archives into `data_dir` when missing (no effect on
        other datasets).
    subset: keep this many examples, balanced over classes and chosen with
        `seed`; more than the split holds keeps everything.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise CdpruneError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
    if subset is not None and (subset <= 0 or subset < info.num_classes):
        raise CdpruneError(f"subset={subset} is too small for {info.name}: use at least one example "
                           f"per class ({info.num_classes})")

    if info.name in ("cifar10", "cifar100"):
        images, targets = load_cifar(info.name, split, data_dir, download)
    elif info.name in ("fashion-mnist", "mnist"):
        images, targets = load_idx(info.name, split, data_dir, info.num_classes, info.input_shape[1:])
    else:
        images, targets = make_synthetic(split, info.num_classes, info.input_shape)

    if subset is not None and subset < len(targets):
        keep = torch.from_numpy(balanced_subset(targets.numpy(), subset, info.num_classes, seed))
        images, targets = images[keep], targets[keep]
    if augment is None:
        augment = split == "train"
    return ImageDataset(images, targets, info, split, augment)
