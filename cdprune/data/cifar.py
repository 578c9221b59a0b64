"""CIFAR-10 / CIFAR-100 from the official python-version batches, plus optional download.

The batches are pickles, so they are read with a restricted unpickler that
only rebuilds numpy arrays: a tampered file cannot run code.
"""
from __future__ import annotations

import codecs
import hashlib
import http.client
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from tqdm import tqdm

from ..errors import CdpruneError

HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class _Source:
    title: str
    folder: str            # folder the official archive unpacks to
    url: str
    md5: str               # of the .tar.gz
    files: dict[str, tuple[str, ...]]   # split -> batch files
    label_key: bytes
    num_classes: int

    @property
    def archive(self) -> str:
        return self.url.rsplit("/", 1)[-1]


SOURCES: dict[str, _Source] = {
    "cifar10": _Source(
        "CIFAR-10", "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        b"labels", 10),
    "cifar100": _Source(
        "CIFAR-100", "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
        {"train": ("train",), "test": ("test",)},
        b"fine_labels", 100),
}


# --------------------------------------------------------------------------- unpickling

class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a callable outside the numpy-array allow-list."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1");
    # only that exact use is allowed.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise ForbiddenGlobal(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Files written by numpy 1.x name numpy.core, by numpy 2.x numpy._core; both
    # resolve to the installed module without touching the deprecated alias.
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild dicts, lists, bytes and numpy arrays, and nothing else."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"{module}.{name}") from None


def restricted_load(path: Path):
    """Unpickle `path` with `RestrictedUnpickler` and byte-string keys (as the official files need)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="bytes").load()


# --------------------------------------------------------------------------- reading

def _fix_hint(src: _Source, data_dir: Path) -> str:
    return f"re-download {src.title} into {data_dir} (download=True, --download) or from {HOMEPAGE}"


def _corrupt(path: Path, reason: str, src: _Source, data_dir: Path) -> CdpruneError:
    reason = " ".join(str(reason).split())  # keep the message on one line
    return CdpruneError(f"{path} is corrupt ({reason}): {_fix_hint(src, data_dir)}")


def _get(batch: dict, key: bytes):
    # Official files have byte keys; files re-pickled by Python 3 have str keys.
    if key in batch:
        return batch[key]
    return batch.get(key.decode())


def read_batch(path: Path, src: _Source, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, N x 3 x 32 x 32) and labels (int64, N) of one batch file."""
    try:
        batch = restricted_load(path)
    except ForbiddenGlobal as e:
        raise CdpruneError(f"{path} is not a CIFAR batch", f"it asks to call {e}, so it was not unpickled; "
                           f"{_fix_hint(src, data_dir)}") from None
    except (EOFError, pickle.UnpicklingError) as e:
        reason = "truncated pickle" if "truncated" in str(e) or isinstance(e, EOFError) else f"bad pickle: {e}"
        raise _corrupt(path, reason, src, data_dir) from None
    except OSError as e:
        raise CdpruneError(f"cannot read {path} ({e.strerror or e})", "check its permissions or "
                           f"{_fix_hint(src, data_dir)}") from None
    except Exception as e:  # garbled bytes surface as many types (ValueError, TypeError, MemoryError...)
        raise _corrupt(path, f"{type(e).__name__}: {e}", src, data_dir) from None

    if not isinstance(batch, dict):
        raise _corrupt(path, f"expected a dict, found {type(batch).__name__}", src, data_dir)
    data, labels = _get(batch, b"data"), _get(batch, src.label_key)
    if data is None or labels is None:
        raise _corrupt(path, f"missing key 'data' or '{src.label_key.decode()}'", src, data_dir)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        shape = getattr(data, "shape", None)
        raise _corrupt(path, f"'data' should be uint8 N x 3072, found {type(data).__name__} {shape}", src, data_dir)
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise _corrupt(path, "labels are not integers", src, data_dir) from None
    if labels.shape != (data.shape[0],):
        raise _corrupt(path, f"{labels.size} labels for {data.shape[0]} images", src, data_dir)
    if labels.size and (labels.min() < 0 or labels.max() >= src.num_classes):
        raise _corrupt(path, f"labels outside 0..{src.num_classes - 1}", src, data_dir)
    # Rows are channel-major: 1024 red, then 1024 green, then 1024 blue values, each row-major 32 x 32.
    return data.reshape(-1, 3, 32, 32), labels


def _find_folder(data_dir: Path, src: _Source, split: str) -> Path | None:
    # data_dir may be the parent of the official folder or the folder itself.
    for folder in (data_dir / src.folder, data_dir):
        if all((folder / f).is_file() for f in src.files[split]):
            return folder
    return None


def load_cifar(name: str, split: str, data_dir: str | os.PathLike | None,
               download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 3 x 32 x 32) and labels (int64, N) of a CIFAR split."""
    src = SOURCES[name]
    if data_dir is None:
        raise CdpruneError(f"{src.title} needs a data directory", "pass data_dir (--data-dir) DIR "
                           f"holding {src.folder}/ (add download=True, --download, to fetch it from {HOMEPAGE})")
    data_dir = Path(data_dir).expanduser()
    folder = _find_folder(data_dir, src, split)
    if folder is None and download:
        download_cifar(src, data_dir)
        folder = _find_folder(data_dir, src, split)
    if folder is None:
        fix = (f"place the official python-version files in {data_dir} (from {HOMEPAGE}) "
               "or set download=True (--download)")
        if not data_dir.is_dir():
            state = "does not exist" if not data_dir.exists() else "is not a folder"
            raise CdpruneError(f"{src.title} {split} split not found", f"data_dir (--data-dir) {data_dir} {state}; {fix}")
        expected = data_dir if data_dir.name == src.folder else data_dir / src.folder
        missing = next(f for f in src.files[split] if not (expected / f).is_file())
        raise CdpruneError(f"{src.title} {split} split not found: {expected / missing} is missing; {fix}")
    parts = [read_batch(folder / f, src, data_dir) for f in src.files[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


# --------------------------------------------------------------------------- download

def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(src: _Source, archive: Path) -> None:
    """Download `src.url` to `archive` via a temporary file, checking the MD5 before the rename."""
    fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=archive.name + ".", suffix=".part")
    h = hashlib.md5()
    done = False
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(src.url, timeout=60) as resp, \
                tqdm(total=getattr(resp, "length", None), unit="B", unit_scale=True,
                     desc=f"downloading {archive.name}", leave=False) as bar:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
        if h.hexdigest() != src.md5:
            raise CdpruneError(f"download of {src.url} is corrupt (MD5 {h.hexdigest()}, expected {src.md5})",
                               f"retry, or place the official files ({src.folder}/) in {archive.parent}")
        os.replace(tmp, archive)
        done = True
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        reason = " ".join(str(getattr(e, "reason", e)).split())
        raise CdpruneError(f"could not download {src.title} from {src.url} ({reason})", "place the official "
                           f"python-version files ({src.folder}/) in {archive.parent}") from None
    finally:
        if not done:
            Path(tmp).unlink(missing_ok=True)


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a .tar.gz into `dest`, refusing absolute paths, '..', links and device files."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name.replace("\\", "/")).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
                    raise CdpruneError(f"{archive} contains an unsafe entry '{m.name}'", "delete it and "
                                       f"download the official archive from {HOMEPAGE}")
            # The "data" filter re-checks the same rules where this Python has it.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CdpruneError(f"{archive} could not be unpacked ({' '.join(str(e).split())})", "delete it and "
                           f"download it again from {HOMEPAGE}") from None


def download_cifar(src: _Source, data_dir: Path) -> None:
    """Fetch (unless a verified archive is already there) and unpack `src` into `data_dir`."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CdpruneError(f"cannot create {data_dir} ({e.strerror or e})",
                           "pass a writable data_dir (--data-dir)") from None
    archive = data_dir / src.archive
    if not (archive.is_file() and _md5(archive) == src.md5):
        _fetch(src, archive)
    safe_extract(archive, data_dir)
