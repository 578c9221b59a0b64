"""Datasets for training: registered ones (CIFAR-10/100, Fashion-MNIST, MNIST, a synthetic set),
a user's images (a folder of class folders, or a .npz file) and a user's own torch Dataset.

    >>> from cdprune import data
    >>> train = data.load_dataset("cifar10", "train", "~/datasets", download=True)
    >>> x, y = train[0]            # float32 3 x 32 x 32 (normalised), int label
    >>> train.info.num_classes, len(train), train.targets.shape
    (10, 50000, torch.Size([50000]))
    >>> mine = data.load_dataset("~/parts", "train", input_shape=(3, 64, 64), augment="crop")
    >>> mine.info.class_names, mine.info.mean      # folder names; statistics of the training split
    >>> images, labels = data.as_tensors(data.load_dataset("cifar10", "test", "~/datasets"))
"""
from __future__ import annotations

from .custom import from_dataset
from .images import as_tensors
from .info import DATASETS, DatasetInfo
from .loading import dataset_info, default_augment, load_dataset
from .transforms import AUGMENTATIONS

__all__ = ["AUGMENTATIONS", "DATASETS", "DatasetInfo", "as_tensors", "dataset_info", "default_augment",
           "from_dataset", "load_dataset"]
