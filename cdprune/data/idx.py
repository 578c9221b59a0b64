"""MNIST / Fashion-MNIST from the official IDX files, gzipped or not."""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import CdpruneError

IMAGES_MAGIC = 2051   # 0x0803: unsigned bytes, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049   # 0x0801: unsigned bytes, 1 dimension (N,)

FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Debian's dataset-fashion-mnist package installs the official files here.
SYSTEM_DIRS: dict[str, Path] = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

_TITLES = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}
_TORCHVISION_DIRS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
_HOMEPAGES = {
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist",
    "mnist": "https://yann.lecun.com/exdb/mnist/",
}


def _how_to_get(name: str) -> str:
    if name == "fashion-mnist":
        return ("run apt-get install -y dataset-fashion-mnist or pass data_dir (--data-dir) DIR holding the "
                f"official IDX files from {_HOMEPAGES[name]}")
    return f"pass data_dir (--data-dir) DIR holding the official IDX files from {_HOMEPAGES[name]}"


def _corrupt(path: Path, reason: str, name: str) -> CdpruneError:
    return CdpruneError(f"{path} is corrupt ({reason})", "replace it with the official file "
                        f"({_how_to_get(name)})")


def read_idx(path: Path, magic: int, name: str) -> np.ndarray:
    """The uint8 array stored in IDX file `path`, whose header must carry `magic`."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # gzip signature; trust the bytes, not the suffix
            raw = gzip.decompress(raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _corrupt(path, f"bad gzip data: {' '.join(str(e).split())}", name) from None
    except OSError as e:
        raise CdpruneError(f"cannot read {path} ({e.strerror or e})", "check its permissions") from None
    if len(raw) < 4:
        raise _corrupt(path, f"only {len(raw)} bytes", name)
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _corrupt(path, f"magic number {found}, expected {magic}", name)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, "truncated header", name)
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise _corrupt(path, f"{len(raw) - header} data bytes, header {dims} needs {size}", name)
    # Copy so that torch gets a writable array it owns.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _search_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Where to look, in order. An explicit data_dir is the only place looked in: falling back
    to the system copy would silently train on data the user did not point at."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, root / name, root / _TORCHVISION_DIRS[name] / "raw"]
    return [SYSTEM_DIRS[name]] if name in SYSTEM_DIRS else []


def _locate(folder: Path, base: str) -> Path | None:
    for path in (folder / base, folder / f"{base}.gz"):
        if path.is_file():
            return path
    return None


def _not_found(name: str, split: str, data_dir: str | os.PathLike | None, dirs: list[Path]) -> CdpruneError:
    """The one-line error for a split whose two files are not together in any searched folder."""
    title = _TITLES[name]
    bases = FILES[split]
    # Report the folder that holds one file of the pair (the one the user most likely meant),
    # else the first folder searched; name every file it lacks.
    folder = next((d for d in dirs if any(_locate(d, b) for b in bases)), dirs[0])
    lacks = " and ".join(f"{b}[.gz]" for b in bases if not _locate(folder, b))
    if data_dir is None:
        return CdpruneError(f"{title} {split} split not found: {folder} lacks {lacks}; {_how_to_get(name)}")
    root = dirs[0]
    where = f"data_dir (--data-dir) {root}"
    if not root.exists():
        problem = f"{where} does not exist"
    elif not root.is_dir():
        problem = f"{where} is not a folder"
    else:
        others = " or ".join(str(d) for d in dirs if d != folder)
        problem = (f"{title} {split} split not found in {where}: {folder} lacks {lacks} "
                   f"(also looked in {others})")
    fix = f"put the official IDX files from {_HOMEPAGES[name]} in {root}"
    if name in SYSTEM_DIRS:
        fix += (f", or leave data_dir (--data-dir) out to use {SYSTEM_DIRS[name]} "
                "(apt-get install -y dataset-fashion-mnist)")
    return CdpruneError(f"{problem}; {fix}")


def load_idx(name: str, split: str, data_dir: str | os.PathLike | None,
             num_classes: int, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 1 x H x W) and labels (int64, N) of an MNIST-style split.

    With `data_dir`, only it and its sub-folders `<name>/` and torchvision's
    `<Title>/raw/` are searched; without it, the system folder (Fashion-MNIST only).
    """
    title = _TITLES[name]
    image_base, label_base = FILES[split]
    dirs = _search_dirs(name, data_dir)
    if not dirs:
        raise CdpruneError(f"{title} needs a data directory", "pass data_dir (--data-dir) DIR holding "
                           f"{image_base}[.gz] and {label_base}[.gz] from {_HOMEPAGES[name]}")
    for folder in dirs:
        image_path, label_path = _locate(folder, image_base), _locate(folder, label_base)
        if image_path and label_path:
            break
    else:
        raise _not_found(name, split, data_dir, dirs)

    images = read_idx(image_path, IMAGES_MAGIC, name)
    labels = read_idx(label_path, LABELS_MAGIC, name).astype(np.int64)
    if images.shape[1:] != shape:
        raise _corrupt(image_path, f"images are {images.shape[1]}x{images.shape[2]}, expected "
                                   f"{shape[0]}x{shape[1]}", name)
    if labels.shape[0] != images.shape[0]:
        raise CdpruneError(f"{label_path} has {labels.shape[0]} labels but {image_path} has "
                           f"{images.shape[0]} images", f"replace both with the official files ({_how_to_get(name)})")
    if labels.size and labels.max() >= num_classes:
        raise _corrupt(label_path, f"labels outside 0..{num_classes - 1}", name)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
