"""A user's own torch Dataset, wrapped so that a run can train on it like on a loaded one."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import CdpruneError
from .folders import fit_image
from .images import ImageSet
from .info import DatasetInfo
from .transforms import check_augment
from .validate import check_input_shape


class WrappedDataset(ImageSet):
    """See `from_dataset`."""

    def __init__(self, dataset: Dataset, info: DatasetInfo, augment: str):
        super().__init__(info, "custom", augment)
        self.dataset = dataset
        self._targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def targets(self) -> torch.Tensor:
        """Labels (int64, N): the dataset's own `.targets` where it has one of the right length, else
        read once by going through its items."""
        if self._targets is None:
            own = getattr(self.dataset, "targets", None)
            labels = None
            if own is not None:
                labels = torch.as_tensor(np.asarray(own)).to(torch.int64).reshape(-1)
                if labels.shape[0] != len(self):
                    labels = None  # not per item (a Subset's parent, say): read the items instead
            if labels is None:
                labels = torch.tensor([self._label(self.dataset[i][1], i) for i in range(len(self))],
                                      dtype=torch.int64)
            k = self.info.num_classes
            if labels.numel() and (labels.min() < 0 or labels.max() >= k):
                bad = int(labels.min() if labels.min() < 0 else labels.max())
                raise CdpruneError(f"{self.info.name} has label {bad} outside 0..{k - 1}", "labels must be class "
                                   f"indices below num_classes ({k})")
            self._targets = labels
        return self._targets

    def _label(self, label, index: int) -> int:
        try:
            value = int(label)
        except (TypeError, ValueError, RuntimeError):
            raise CdpruneError(f"item {index} of {self.info.name} has label {label!r}", "items must be (image, label) "
                               "with an integer class index") from None
        if not 0 <= value < self.info.num_classes:
            raise CdpruneError(f"item {index} of {self.info.name} has label {value}, outside "
                               f"0..{self.info.num_classes - 1}", "labels must be class indices below num_classes")
        return value

    def _image(self, image, index: int) -> torch.Tensor:
        shape = tuple(self.info.input_shape)
        if isinstance(image, Image.Image):
            # Only the mode is converted: resizing is the dataset's business, so sizes are checked below.
            image = fit_image(image, (shape[0], image.height, image.width))
        elif not (torch.is_tensor(image) and (image.dtype == torch.uint8 or image.is_floating_point())):
            kind = f"a {image.dtype} tensor" if torch.is_tensor(image) else f"a {type(image).__name__}"
            raise CdpruneError(f"item {index} of {self.info.name} has {kind} as image", "items must be (image, label) "
                               "with image a uint8 C x H x W tensor, a float tensor in [0, 1] or a PIL image")
        if tuple(image.shape) != shape:
            raise CdpruneError(f"item {index} of {self.info.name} is {'x'.join(map(str, image.shape))} but "
                               f"input_shape is {'x'.join(map(str, shape))} (C x H x W)", "resize the dataset's "
                               "images or pass the input_shape they have")
        return image if image.dtype == torch.uint8 else image.to(torch.float32)

    def _item(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[index]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise CdpruneError(f"item {index} of {self.info.name} is a {type(item).__name__}", "items must be "
                               "(image, label) pairs")
        return self._image(item[0], index), self._label(item[1], index)

    def pixels(self, index: int) -> torch.Tensor:
        return self._item(index)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self._item(index)
        return self.normalize(self.transform(image)), label


def from_dataset(dataset: Dataset, *, num_classes: int, input_shape: Sequence[int], mean: Sequence[float],
                 std: Sequence[float], augment: str = "none", class_names: Sequence[str] | None = None,
                 name: str = "custom") -> WrappedDataset:
    """Wrap a torch Dataset whose items are `(image, label)` so that cdprune can train on it.

    image: a uint8 C x H x W tensor (0..255), a float tensor in [0, 1], or a PIL image
        (converted to grayscale for C = 1, RGB for C = 3; not resized). It must have `input_shape`.
    mean, std: per channel, on the [0, 1] scale; items are normalised as `(x - mean) / std`.
    augment: one of `AUGMENTATIONS`, applied to every item: wrap a training set with the
        augmentation you want and its test set with "none".
    Like `load_dataset`'s datasets the result has `.info`, `.targets` (the dataset's own
    `.targets`, or else read once from its items) and `len()`; item i is
    `(float32 C x H x W, int label)`.
    """
    if not isinstance(dataset, Dataset) and not hasattr(dataset, "__getitem__"):
        raise CdpruneError(f"from_dataset needs a torch.utils.data.Dataset, got {type(dataset).__name__}")
    if not hasattr(dataset, "__len__"):
        raise CdpruneError(f"{name} has no len()", "from_dataset needs a map-style Dataset with __len__")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise CdpruneError(f"num_classes must be a positive integer, got {num_classes!r}")
    shape = check_input_shape(input_shape)
    stats = {}
    for key, values in (("mean", mean), ("std", std)):
        try:
            stats[key] = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise CdpruneError(f"{key} must be {shape[0]} numbers, one per channel, got {values!r}") from None
        if len(stats[key]) != shape[0]:
            raise CdpruneError(f"{key} has {len(stats[key])} values but input_shape has {shape[0]} channels",
                               "give one per channel")
    if not all(s > 0 for s in stats["std"]):
        raise CdpruneError(f"std must be > 0 per channel, got {stats['std']}")
    names = tuple(str(n) for n in class_names) if class_names is not None else ()
    if class_names is not None and len(names) != num_classes:
        raise CdpruneError(f"{len(names)} class_names for num_classes={num_classes}", "give one name per class")
    info = DatasetInfo(str(name), num_classes, shape, stats["mean"], stats["std"], names, check_augment(augment))
    return WrappedDataset(dataset, info, augment)
