"""A user's images in class folders: listing, checking, splitting and decoding (PNG, JPEG, BMP via Pillow).

Two layouts are read:

    DIR/train/<class>/*.png  and  DIR/val/<class>/*.png   (or DIR/test/<class>/...)
    DIR/<class>/*.png                                      (split here by val_fraction)

Class names are the folder names, sorted; label k is the k-th name. Images may sit in
sub-folders of a class folder; files whose names start with "." and files with other
suffixes are skipped. Every image's header is read up front (no pixel decoding), so a
corrupt or foreign file, an empty class or mixed sizes are reported before any training.
"""
from __future__ import annotations

import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import CdpruneError
from .images import ImageSet
from .info import DatasetInfo

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_FORMATS = ("PNG", "JPEG", "BMP")  # Pillow opens nothing else, whatever a file's suffix claims
_GRAY_MODES = ("1", "L", "LA", "I", "F")
TEST_FOLDERS = ("val", "test")  # the first one present is the test split; see find_layout


def _suffixes() -> str:
    return ", ".join(IMAGE_SUFFIXES)


# --------------------------------------------------------------------------- parallel decoding

def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def run_parallel(fn: Callable[[int], object], n: int, chunk: int = 64) -> list:
    """[fn(0), ..., fn(n-1)], computed on a thread pool (Pillow decodes without holding the GIL).

    Work is cut into chunks that are collected in order, so when several items fail the
    error raised is always the one of the lowest index.
    """
    def run(start: int) -> list:
        return [fn(i) for i in range(start, min(n, start + chunk))]

    if _workers() == 1 or n <= chunk:
        return run(0) if n else []
    out: list = []
    with ThreadPoolExecutor(_workers()) as pool:
        for part in pool.map(run, range(0, n, chunk)):
            out.extend(part)
    return out


# --------------------------------------------------------------------------- one image

def _unreadable(path, e: BaseException) -> CdpruneError:
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    reason = " ".join(str(reason).split())  # keep the message on one line
    return CdpruneError(f"cannot read image {path} ({reason})", "replace or delete the file")


def read_header(path: str) -> tuple[int, int, str]:
    """(height, width, Pillow mode) of an image, from its header only."""
    try:
        with Image.open(path, formats=_FORMATS) as im:
            return im.height, im.width, im.mode
    except Exception as e:  # truncated or foreign files surface as many types (OSError, SyntaxError, ...)
        raise _unreadable(path, e) from None


def is_gray(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;16")


def fit_image(im: Image.Image, shape: Sequence[int]) -> torch.Tensor:
    """`im` as a uint8 tensor of `shape` (C, H, W): converted to grayscale ("L") for C = 1 or to
    "RGB" for C = 3 (alpha dropped), then resized bilinearly where its size differs."""
    c, h, w = shape
    if im.mode.startswith("I;16"):
        # 16-bit grayscale: keep the top of the range instead of Pillow's clipping at 255.
        wide = np.asarray(im, dtype=np.uint32)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")  # a palette with transparency converts cleanly only this way
    if c == 1:
        if not is_gray(im.mode):
            im = im.convert("RGB")
        if im.mode != "L":
            im = im.convert("L")
    elif im.mode != "RGB":
        im = im.convert("RGB")
    if im.size != (w, h):
        im = im.resize((w, h), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.array(im, dtype=np.uint8))
    return pixels.unsqueeze(0) if c == 1 else pixels.permute(2, 0, 1).contiguous()


def decode(path: str, shape: Sequence[int]) -> torch.Tensor:
    """The image at `path` as a uint8 tensor of `shape` (C, H, W); see `fit_image`."""
    _, h, w = shape
    try:
        with Image.open(path, formats=_FORMATS) as im:
            if im.width >= 2 * w and im.height >= 2 * h:
                # JPEG only: let the decoder scale down by a power of two first, much faster on photos.
                im.draft(im.mode, (w, h))
            return fit_image(im, shape)
    except CdpruneError:
        raise
    except Exception as e:
        raise _unreadable(path, e) from None


def decode_all(paths: Sequence[str], shape: Sequence[int]) -> torch.Tensor:
    """All images of `paths`, decoded in parallel, as one uint8 tensor (N, C, H, W)."""
    out = torch.empty((len(paths), *shape), dtype=torch.uint8)

    def fill(i: int) -> None:
        out[i] = decode(paths[i], shape)

    run_parallel(fill, len(paths))
    return out


# --------------------------------------------------------------------------- listing

def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def list_images(folder: Path) -> list[str]:
    """The image files under `folder` (recursively), in a fixed order."""
    found: list[str] = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(top, f) for f in sorted(files)
                     if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES))
    return found


def _class_files(folder: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Class names (sorted) and each class's image files, for a folder of class folders."""
    classes = _subfolders(folder)
    if not classes:
        stray = next((p.name for p in folder.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)), None)
        holds = f"holds images ({stray}, ...) but no class folders" if stray else "holds no class folders"
        raise CdpruneError(f"{folder} {holds}", "put each class's images in its own sub-folder "
                           f"({folder / '<class>'}/), or train/ and val/ folders that hold such class folders")
    files = {}
    for c in classes:
        files[c.name] = list_images(c)
        if not files[c.name]:
            raise CdpruneError(f"class folder {c} holds no images ({_suffixes()})", "add its images or remove "
                               "the folder")
    return [c.name for c in classes], files


@dataclass(frozen=True)
class Layout:
    """Where a folder dataset's splits are. `test` is None for a folder of class folders (split here)."""

    root: Path
    train: Path
    test: Path | None


def find_layout(root: Path) -> Layout:
    """train/ with val/ (or else test/) beside it, or class folders directly in `root`.

    When both val/ and test/ exist, val/ is the test split: cdprune evaluates on it every
    epoch, and a held-out test/ stays untouched for the user's final check.
    """
    names = {p.name for p in _subfolders(root)}
    if "train" in names:
        held_out = next((n for n in TEST_FOLDERS if n in names), None)
        if held_out is None:
            raise CdpruneError(f"{root} has train/ but no val/ or test/ beside it", f"add {root / 'val'} with the "
                               f"same class folders, or put the class folders directly in {root} to split them "
                               "by val_fraction (--val-fraction)")
        return Layout(root, root / "train", root / held_out)
    return Layout(root, root, None)


def stamp(root: Path) -> tuple:
    """Modification times of `root` and its folders two levels down: they change when an image or
    a class is added, removed or renamed, which is what the in-process cache must notice."""
    out = []
    for folder in [root, *_subfolders(root)]:
        out.append((folder.name, folder.stat().st_mtime_ns))
        if folder is not root:
            out.extend((f"{folder.name}/{p.name}", p.stat().st_mtime_ns) for p in _subfolders(folder))
    return tuple(out)


@dataclass
class FolderSplits:
    """Files and labels of both splits of a folder dataset."""

    class_names: list[str]
    files: dict[str, list[str]]          # split -> files
    labels: dict[str, np.ndarray]        # split -> int64 labels


def split_folders(layout: Layout, val_fraction: float, seed: int) -> FolderSplits:
    """List both splits. For class folders directly in the root, each class's files are split with
    `numpy.random.default_rng((seed, crc32(class name)))`: a class's split depends only on its own
    files and the seed, the same for the "train" and the "test" call."""
    names, files = _class_files(layout.train)
    if layout.test is None:
        split = {"train": ([], []), "test": ([], [])}
        for k, name in enumerate(names):
            members = files[name]
            if len(members) < 2:
                raise CdpruneError(f"class folder {layout.root / name} holds 1 image", "at least 2 are needed to "
                                   "split it into train and test by val_fraction (--val-fraction); add images "
                                   "or use train/ and val/ folders")
            n_test = min(len(members) - 1, max(1, math.floor(val_fraction * len(members) + 0.5)))
            rng = np.random.default_rng((seed, zlib.crc32(name.encode())))
            is_test = np.zeros(len(members), dtype=bool)
            is_test[rng.permutation(len(members))[:n_test]] = True
            for part, chosen in (("train", ~is_test), ("test", is_test)):
                picked = [f for f, keep in zip(members, chosen) if keep]
                split[part][0].extend(picked)
                split[part][1].extend([k] * len(picked))
        return FolderSplits(names, {s: split[s][0] for s in split},
                            {s: np.asarray(split[s][1], dtype=np.int64) for s in split})

    test_names = [p.name for p in _subfolders(layout.test)]
    missing = [n for n in names if n not in test_names]
    if missing:
        raise CdpruneError(f"class '{missing[0]}' is in {layout.train} but missing from {layout.test}", "add "
                           f"{layout.test / missing[0]} with its images, or remove {layout.train / missing[0]}")
    extra = [n for n in test_names if n not in names]
    if extra:
        raise CdpruneError(f"{layout.test / extra[0]} has no class folder in {layout.train}", "add "
                           f"{layout.train / extra[0]} with its images, or remove {layout.test / extra[0]}")
    _, test_files = _class_files(layout.test)
    out_files, out_labels = {}, {}
    for part, by_class in (("train", files), ("test", test_files)):
        out_files[part] = [f for n in names for f in by_class[n]]
        out_labels[part] = np.concatenate([np.full(len(by_class[n]), k, dtype=np.int64)
                                           for k, n in enumerate(names)])
    return FolderSplits(names, out_files, out_labels)


def image_shape(files: Sequence[str], input_shape: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """Read every file's header (so that a bad file fails now) and return the network input shape:
    `input_shape`, or else the images' common size with 1 channel if all are grayscale, 3 if not."""
    headers = run_parallel(lambda i: read_header(files[i]), len(files), chunk=256)
    if input_shape is not None:
        return input_shape
    h, w, _ = headers[0]
    for f, (fh, fw, _) in zip(files, headers):
        if (fh, fw) != (h, w):
            raise CdpruneError(f"images differ in size: {files[0]} is {h}x{w} (HxW) but {f} is {fh}x{fw}: pass "
                               "input_shape (--input C,H,W) to resize them all to one size")
    return (1 if all(is_gray(mode) for _, _, mode in headers) else 3, h, w)


class ImageFolderDataset(ImageSet):
    """Images decoded from their files in each `__getitem__` (so DataLoader workers decode in
    parallel); for splits too large to hold in memory."""

    def __init__(self, files: Sequence[str], targets: torch.Tensor, info: DatasetInfo, split: str, augment: str):
        if len(files) != targets.shape[0]:
            raise ValueError(f"{len(files)} files for {targets.shape[0]} labels")
        super().__init__(info, split, augment)
        self.files = list(files)
        self.targets = targets.to(torch.int64)

    def pixels(self, index: int) -> torch.Tensor:
        return decode(self.files[index], self.info.input_shape)

    def plain(self, indices: torch.Tensor) -> torch.Tensor:
        return self.normalize(decode_all([self.files[i] for i in indices.tolist()], self.info.input_shape))
