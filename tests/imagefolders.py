"""Small image sets written as class folders of PNGs or as .npz files, for the data tests.

The pixels are real Fashion-MNIST test images where Debian's dataset-fashion-mnist is
installed, else generated patterns; the tests check the same things either way.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

FASHION = Path("/usr/share/datasets/fashion-mnist")
# Folder name -> Fashion-MNIST label. The names sort in another order than the labels, so a
# test can see that labels follow the sorted folder names.
CLASSES = {"coat": 4, "bag": 8, "ankle_boot": 9}
NAMES = sorted(CLASSES)


def _fashion(per_class: int) -> dict[str, np.ndarray] | None:
    images_path, labels_path = FASHION / "t10k-images-idx3-ubyte.gz", FASHION / "t10k-labels-idx1-ubyte.gz"
    if not (images_path.is_file() and labels_path.is_file()):
        return None
    images = np.frombuffer(gzip.decompress(images_path.read_bytes()), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.decompress(labels_path.read_bytes()), np.uint8, offset=8)
    return {name: images[labels == label][:per_class].copy() for name, label in CLASSES.items()}


def _patterns(per_class: int) -> dict[str, np.ndarray]:
    out = {}
    for k, name in enumerate(CLASSES):
        rng = np.random.default_rng(k)
        base = rng.integers(0, 256, (7, 7)).repeat(4, 0).repeat(4, 1)
        noise = rng.integers(-40, 41, (per_class, 28, 28))
        out[name] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return out


def class_images(per_class: int) -> dict[str, np.ndarray]:
    """`per_class` distinct grayscale 28 x 28 uint8 images per class name."""
    return _fashion(per_class) or _patterns(per_class)


def colour(gray: np.ndarray) -> np.ndarray:
    """An H x W x 3 image made from a grayscale one, with different values per channel."""
    g = gray.astype(np.int32)
    return np.stack([g, (g * 3) // 4, 255 - g], axis=-1).astype(np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_classes(folder: Path, images: dict[str, np.ndarray], start: int = 0, stop: int | None = None) -> None:
    """Images [start:stop] of each class as folder/<class>/<index>.png."""
    for name, stack in images.items():
        for i in range(start, len(stack) if stop is None else stop):
            write_png(folder / name / f"{i:03d}.png", stack[i])


def split_tree(root: Path, images: dict[str, np.ndarray], n_train: int) -> Path:
    """root/train/<class>/ with the first n_train images of each class, root/val/<class>/ with the rest."""
    write_classes(root / "train", images, 0, n_train)
    write_classes(root / "val", images, n_train)
    return root


def flat_tree(root: Path, images: dict[str, np.ndarray]) -> Path:
    """root/<class>/ with all images of each class."""
    write_classes(root, images)
    return root
