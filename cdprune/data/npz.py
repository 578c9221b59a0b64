"""A user's images in one .npz file: x_train, y_train, x_test, y_test (and optionally class_names).

Images are uint8 (0..255), other integers in 0..255, or floats in [0, 1] (stored as
uint8 after rounding x * 255); N x H x W x C or N x C x H x W with C = 1 or 3, or
N x H x W for grayscale. Labels are integer class indices 0..K-1, K = the largest
training label + 1 (or the length of `class_names`). The file is read with
`allow_pickle=False`: an object array is refused, never unpickled.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import CdpruneError
from .folders import fit_image

KEYS = ("x_train", "y_train", "x_test", "y_test")
_FIX = "store x_train, y_train, x_test and y_test as numpy arrays (np.savez)"


def _bad(path: Path, problem: str, fix: str = _FIX) -> CdpruneError:
    return CdpruneError(f"{path}: {problem}; {fix}")


def _images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """`x` as uint8 N x C x H x W."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        first, last = x.shape[1] in (1, 3), x.shape[3] in (1, 3)
        if last and not first:
            x = x.transpose(0, 3, 1, 2)
        elif first == last:
            raise _bad(path, f"{key} has shape {x.shape}, which is neither N x H x W x C nor N x C x H x W "
                             "with C = 1 or 3 channels", "store the images in one of those layouts")
    else:
        raise _bad(path, f"{key} has shape {x.shape}, expected N x H x W x C or N x C x H x W images",
                   "store the images in one of those layouts")
    if x.shape[0] == 0:
        raise _bad(path, f"{key} holds no images", "add images")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        low, high = float(np.min(x)), float(np.max(x))
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0.0 and high <= 1.0):
            raise _bad(path, f"{key} holds floats outside [0, 1] (min {low:g}, max {high:g})",
                       "scale them to [0, 1] or store uint8 0..255")
        return np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8))
    if np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_:
        low, high = int(np.min(x)), int(np.max(x))
        if low < 0 or high > 255:
            raise _bad(path, f"{key} holds integers outside 0..255 (min {low}, max {high})",
                       "store uint8 0..255 or floats in [0, 1]")
        return np.ascontiguousarray(x.astype(np.uint8))
    raise _bad(path, f"{key} has dtype {x.dtype}", "store images as uint8 0..255 or floats in [0, 1]")


def _labels(path: Path, key: str, y: np.ndarray, n: int, images_key: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise _bad(path, f"{key} has shape {y.shape} and dtype {y.dtype}",
                   "store labels as a 1-D integer array of class indices 0..K-1 (not one-hot)")
    if y.shape[0] != n:
        raise _bad(path, f"{images_key} has {n} images but {key} has {y.shape[0]} labels",
                   "store one label per image")
    return y.astype(np.int64)


def _fit(x: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 N x C x H x W as `shape` (C, H, W), each image converted and resized like a file's."""
    if tuple(x.shape[1:]) == tuple(shape):
        return torch.from_numpy(x)
    out = torch.empty((x.shape[0], *shape), dtype=torch.uint8)
    for i, img in enumerate(x):
        pil = Image.fromarray(img[0], "L") if img.shape[0] == 1 else Image.fromarray(img.transpose(1, 2, 0), "RGB")
        out[i] = fit_image(pil, shape)
    return out


def load_npz(path: Path, input_shape: tuple[int, int, int] | None
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Images (uint8 N x C x H x W) and labels (int64) per split, and the class names."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _bad(path, f"cannot be read as a .npz archive ({' '.join(str(e).split())})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _bad(path, "is a single .npy array, not a .npz archive")
    with archive:
        missing = [k for k in KEYS if k not in archive.files]
        if missing:
            raise _bad(path, f"lacks {' and '.join(missing)} (it holds {', '.join(archive.files) or 'nothing'})")
        arrays = {}
        for key in KEYS + (("class_names",) if "class_names" in archive.files else ()):
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                raise _bad(path, f"{key} cannot be read ({' '.join(str(e).split())})") from None

    images = {s: _images(path, f"x_{s}", arrays[f"x_{s}"]) for s in ("train", "test")}
    labels = {s: _labels(path, f"y_{s}", arrays[f"y_{s}"], images[s].shape[0], f"x_{s}") for s in ("train", "test")}
    if input_shape is None and images["train"].shape[1:] != images["test"].shape[1:]:
        raise _bad(path, f"x_train images are {'x'.join(map(str, images['train'].shape[1:]))} (CxHxW) but x_test's "
                         f"are {'x'.join(map(str, images['test'].shape[1:]))}",
                   "store both at one size or pass input_shape (--input C,H,W) to resize them")

    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US" or names.size == 0:
            raise _bad(path, f"class_names has shape {names.shape} and dtype {names.dtype}",
                       "store class_names as a 1-D array of strings, one per class")
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    else:
        class_names = [str(k) for k in range(int(labels["train"].max()) + 1)]
    k = len(class_names)
    for s in ("train", "test"):
        y = labels[s]
        if y.min() < 0 or y.max() >= k:
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise _bad(path, f"y_{s} has label {bad}, outside 0..{k - 1}",
                       "use class indices 0..K-1, K = the number of classes"
                       + (" (the length of class_names)" if "class_names" in arrays else ""))
    absent = np.flatnonzero(np.bincount(labels["train"], minlength=k) == 0)
    if absent.size:
        raise _bad(path, f"y_train has no example of class {int(absent[0])} ({class_names[absent[0]]})",
                   "number the classes 0..K-1 with every class in the training set")

    shape = input_shape or tuple(images["train"].shape[1:])
    return ({s: _fit(images[s], shape) for s in images}, {s: torch.from_numpy(labels[s]) for s in labels},
            class_names)
