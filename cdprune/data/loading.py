"""One entry point for every kind of data: a registered dataset, a folder of class folders, a .npz file.

Folder and .npz data get their normalisation (per-channel mean and std on the [0, 1]
scale) from their training split at the network input size; the test split uses the
same numbers. Preparing such data (listing, reading headers, decoding the training
images for the statistics) is cached in this process, keyed by the path, the
modification times of its folders (of the file, for .npz), input_shape, val_fraction and
seed, so that `dataset_info` followed by `load_dataset` does the work once.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import CdpruneError
from .cifar import load_cifar
from .folders import ImageFolderDataset, decode_all, find_layout, image_shape, split_folders, stamp
from .idx import load_idx
from .images import ChannelStats, ImageDataset, ImageSet, balanced_subset
from .info import DATASETS, DatasetInfo, registered_info, registered_key
from .npz import load_npz
from .synthetic import make_synthetic
from .transforms import check_augment
from .validate import DEFAULT_VAL_FRACTION, check_input_shape, check_val_fraction

SPLITS = ("train", "test")

#: A folder split whose decoded pixels (N x C x H x W bytes at the network input size) fit in this is
#: decoded once and held in memory; a larger one is decoded item by item, in the DataLoader's workers.
MAX_CACHE_BYTES = 200 * 10**6
#: A split too large to hold gets its statistics from a class-balanced sample of this many images.
STATS_SAMPLE = 20_000
_CACHE_ENTRIES = 2  # prepared datasets kept, each with the pixels it holds: bounds the memory the cache pins


def default_augment(input_shape: Sequence[int]) -> str:
    """The augmentation of a user's folder or .npz data when the run does not choose one.

    Random crops (zero padding of 2 pixels below 32 x 32, 4 from 32 x 32 up) are harmless to
    almost any image class. A mirror is not: it turns a "b" into a "d", a left arrow into a
    right one. Inputs of at least 32 x 32 are mostly photographs of objects and scenes, where
    mirroring is the standard augmentation, so they get "crop-flip"; smaller inputs are more
    often glyphs, digits, icons and sensor patches, so they get "crop". Data whose classes
    depend on left and right (text, signs, hands) should pass augment="crop" (--augment crop).
    """
    return "crop-flip" if min(input_shape[-2:]) >= 32 else "crop"


@dataclass
class _Prepared:
    """A folder or .npz dataset, checked: its info, labels, files and whatever pixels are decoded."""

    info: DatasetInfo
    targets: dict[str, torch.Tensor]
    images: dict[str, torch.Tensor | None]
    files: dict[str, list[str]] | None = None  # folder data only

    def fits(self, split: str) -> bool:
        return len(self.targets[split]) * math.prod(self.info.input_shape) <= MAX_CACHE_BYTES

    def pixels(self, split: str) -> torch.Tensor | None:
        """The split's uint8 images, decoding (once) a folder split small enough to hold; None if too large."""
        if self.images.get(split) is None and self.files is not None and self.fits(split):
            self.images[split] = decode_all(self.files[split], self.info.input_shape)
        return self.images.get(split)


_cache: OrderedDict[tuple, _Prepared] = OrderedDict()


def _describe_missing(data, path: Path) -> CdpruneError:
    text = os.fspath(data)
    choose = f"choose one of {', '.join(DATASETS)}, or give a folder of class folders or a .npz file"
    if isinstance(data, str) and os.sep not in text and "/" not in text and not text.lower().endswith(".npz"):
        return CdpruneError(f"unknown dataset '{text}': {choose} ({path} does not exist)")
    return CdpruneError(f"data {path} does not exist: {choose} that exists")


def _resolve(data, data_dir) -> Path:
    """The file or folder `data` names. A relative path is taken inside `data_dir` when one is given, so that
    a run can record where its data lives (data_dir) apart from which data it is (data)."""
    try:
        path = Path(os.fspath(data)).expanduser()
    except TypeError:
        raise CdpruneError(f"data must be a dataset name or a path, got {type(data).__name__}") from None
    if not path.is_absolute() and data_dir is not None:
        path = Path(data_dir).expanduser() / path
    if not path.exists():
        raise _describe_missing(data, path)
    if path.is_file() and path.suffix.lower() != ".npz":
        raise CdpruneError(f"data {path} is a file but not a .npz", "give a folder of class folders or a .npz file "
                           "holding x_train, y_train, x_test, y_test")
    return path


def _stats_of(prepared: _Prepared) -> tuple[tuple[float, ...], tuple[float, ...]]:
    stats = ChannelStats(prepared.info.input_shape[0])
    images = prepared.pixels("train")
    if images is not None:
        stats.add(images)
        return stats.result()
    # Too large to hold: a fixed class-balanced sample, decoded in parallel and dropped.
    targets = prepared.targets["train"]
    keep = balanced_subset(targets.numpy(), STATS_SAMPLE, prepared.info.num_classes, seed=0)
    files = prepared.files["train"]
    for start in range(0, len(keep), 2048):
        stats.add(decode_all([files[i] for i in keep[start:start + 2048]], prepared.info.input_shape))
    return stats.result()


def _prepare(data, data_dir, input_shape, val_fraction: float, seed: int) -> _Prepared:
    path = _resolve(data, data_dir)
    name = os.fspath(data)
    resolved = path.resolve()
    if path.is_file():
        st = path.stat()
        key = ("npz", str(resolved), st.st_mtime_ns, st.st_size, input_shape)
    else:
        key = ("folder", str(resolved), stamp(path), input_shape, val_fraction, seed)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]

    if path.is_file():
        images, targets, class_names = load_npz(path, input_shape)
        shape = tuple(images["train"].shape[1:])
        prepared = _Prepared(DatasetInfo(name, len(class_names), shape, (), (), tuple(class_names), "none"),
                             targets, dict(images))
    else:
        splits = split_folders(find_layout(path), val_fraction, seed)
        shape = image_shape(splits.files["train"] + splits.files["test"], input_shape)
        prepared = _Prepared(DatasetInfo(name, len(splits.class_names), shape, (), (), tuple(splits.class_names),
                                         "none"),
                             {s: torch.from_numpy(splits.labels[s]) for s in SPLITS}, {}, splits.files)
    mean, std = _stats_of(prepared)
    prepared.info = DatasetInfo(name, prepared.info.num_classes, shape, mean, std, prepared.info.class_names,
                                default_augment(shape))

    _cache[key] = prepared
    while len(_cache) > _CACHE_ENTRIES:
        _cache.popitem(last=False)
    return prepared


def _check_common(input_shape, val_fraction, seed):
    shape = None if input_shape is None else check_input_shape(input_shape)
    fraction = check_val_fraction(val_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CdpruneError(f"seed (--seed) must be an integer >= 0, got {seed!r}")
    return shape, fraction, int(seed)


def _registered_with_shape(key: str, input_shape, val_fraction: float) -> DatasetInfo:
    info = registered_info(key)
    if input_shape is not None and tuple(input_shape) != tuple(info.input_shape):
        shape = ",".join(map(str, info.input_shape))
        raise CdpruneError(f"{info.name} images are {shape} (C,H,W)", "leave input_shape (--input) out or pass "
                           f"{shape} for {info.name}; other sizes need your own images in a folder or .npz file")
    if val_fraction != DEFAULT_VAL_FRACTION:  # it would be ignored, and recorded as if it had been used
        raise CdpruneError(f"{info.name} has its own test split, so val_fraction (--val-fraction) {val_fraction:g} "
                           "would be ignored", "leave it out; it splits a folder of class folders")
    return info


def dataset_info(data: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                 input_shape: Sequence[int] | None = None, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> DatasetInfo:
    """Everything a run needs to know about `data` before training: classes, their names, input shape,
    normalisation and default augmentation.

    `data` is a registered dataset name (`DATASETS`: case-insensitive, "_" may stand for "-") or the
    path of a folder of class folders or of a .npz file (relative to `data_dir` when given); see
    `load_dataset`. For a folder or .npz this checks every file and reads the training images for
    the statistics (cached, so a following `load_dataset` with the same arguments does not again).
    """
    shape, fraction, seed = _check_common(input_shape, val_fraction, seed)
    key = registered_key(data)
    if key is not None:
        return _registered_with_shape(key, shape, fraction)
    return _prepare(data, data_dir, shape, fraction, seed).info


def load_dataset(data: str | os.PathLike, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                 input_shape: Sequence[int] | None = None, augment: str | None = None, val_fraction: float = DEFAULT_VAL_FRACTION,
                 download: bool = False, subset: int | None = None, seed: int = 0) -> ImageSet:
    """Load one split ("train" or "test") of `data`.

    data: a registered dataset name (`DATASETS`), or the path of (relative paths are looked up
        inside `data_dir` when it is given):
        - a folder holding train/ and val/ (or test/), each with one folder of images per class;
        - a folder holding the class folders directly, split here: each class gives `val_fraction`
          of its images (at least one) to "test", chosen with `seed` (same seed, same split);
        - a .npz file with x_train, y_train, x_test, y_test (see `cdprune.data.npz`).
        Images are PNG, JPEG or BMP; class names are the folder names, sorted.
    input_shape: (C, H, W) for folder and .npz data: images are converted to grayscale (C = 1) or
        RGB (C = 3) and resized bilinearly to H x W. Without it all images must share one size, and
        C is 1 if they are all grayscale, else 3. A registered dataset has its fixed shape.
    augment: "none", "flip", "crop" or "crop-flip" for the training split; None takes the data's
        default (`DatasetInfo.augment`). The test split is never augmented. Randomness comes from
        torch's global RNG.
    download: fetch CIFAR archives into `data_dir` when missing (no effect on other data).
    subset: keep this many examples, balanced over classes and chosen with `seed`; more than the
        split holds keeps everything.

    Items are `(float32 C x H x W normalised with info.mean / info.std, int label)`; the dataset
    also has `.info`, `.targets` (int64, N) and `len()`. A folder split small enough
    (`MAX_CACHE_BYTES`) is decoded once into memory; a larger one decodes each item when it is read.
    """
    if split not in SPLITS:
        raise CdpruneError(f"unknown split '{split}'", f"choose one of {', '.join(SPLITS)}")
    if augment is not None:
        check_augment(augment)
    shape, fraction, seed = _check_common(input_shape, val_fraction, seed)
    key = registered_key(data)
    prepared = None
    if key is not None:
        info = _registered_with_shape(key, shape, fraction)
    else:
        prepared = _prepare(data, data_dir, shape, fraction, seed)
        info = prepared.info
    if subset is not None and (subset <= 0 or subset < info.num_classes):
        raise CdpruneError(f"subset={subset} is too small for {info.name}", "use at least one example "
                           f"per class ({info.num_classes})")

    mode = (info.augment if augment is None else augment) if split == "train" else "none"
    if prepared is None:
        images, targets = _load_registered(info, split, data_dir, download)
        files = None
    else:
        targets = prepared.targets[split]
        images = prepared.pixels(split)
        files = prepared.files[split] if images is None else None

    if subset is not None and subset < len(targets):
        keep = torch.from_numpy(balanced_subset(targets.numpy(), subset, info.num_classes, seed))
        targets = targets[keep]
        if images is not None:
            images = images[keep]
        else:
            files = [files[i] for i in keep.tolist()]
    if images is not None:
        return ImageDataset(images, targets, info, split, mode)
    return ImageFolderDataset(files, targets, info, split, mode)


def _load_registered(info: DatasetInfo, split: str, data_dir, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if info.name in ("cifar10", "cifar100"):
        return load_cifar(info.name, split, data_dir, download)
    if info.name in ("fashion-mnist", "mnist"):
        return load_idx(info.name, split, data_dir, info.num_classes, info.input_shape[1:])
    return make_synthetic(split, info.num_classes, info.input_shape)
