"""Tests for cdprune.data: tiny files in the official formats are written and read back."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import re
import tarfile
import urllib.error

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from cdprune import data
from cdprune.data import cifar as cifar_mod
from cdprune.data import idx as idx_mod
from cdprune.data.images import balanced_subset
from cdprune.data.transforms import random_crop_flip
from cdprune.errors import CdpruneError
from cifarfiles import cifar_images, write_cifar10, write_pickle

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


# --------------------------------------------------------------------------- file writers

@pytest.fixture
def cifar10_dir(tmp_path):
    """A CIFAR-10 parent folder: 5 train batches of 4 images and a 4-image test batch."""
    return lambda style="numpy1-protocol2": write_cifar10(tmp_path, 4, style)


def _write_idx(path, array: np.ndarray, magic: int, gz: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


def _idx_split(folder, prefix: str, n: int, gz: bool, labels=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        images[i, i, 27 - i] = 255            # image i: one white pixel at row i, col 27 - i
    labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    suffix = ".gz" if gz else ""
    _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, 2051, gz)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 2049, gz)


# --------------------------------------------------------------------------- info

def test_dataset_info_known_and_unknown():
    assert data.DATASETS == ["cifar10", "cifar100", "fashion-mnist", "mnist", "synthetic"]
    info = data.dataset_info("CIFAR100")
    assert (info.num_classes, info.input_shape) == (100, (3, 32, 32))
    assert data.dataset_info("fashion_mnist").input_shape == (1, 28, 28)
    with pytest.raises(CdpruneError, match="imagenet.*cifar10, cifar100"):
        data.dataset_info("imagenet")


def test_unknown_split_is_an_error():
    with pytest.raises(CdpruneError, match="unknown split 'val'"):
        data.load_dataset("synthetic", "val")


# --------------------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("style", ["numpy1-protocol2", "protocol5"])
def test_cifar10_pixels_labels_and_layout(cifar10_dir, style):
    root = cifar10_dir(style)
    train = data.load_dataset("cifar10", "train", root, augment="none")
    assert len(train) == 20 and train.info.name == "cifar10"
    assert train.targets.dtype == torch.int64 and train.targets.tolist() == [i % 10 for i in range(20)]

    x, y = train[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 5 and isinstance(y, int)
    expect = lambda v, c: (v / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]  # noqa: E731
    assert torch.allclose(x[0], torch.full((32, 32), expect(255, 0)), atol=1e-5)   # red plane first
    assert x[1, 3, 7].item() == pytest.approx(expect(200, 1), abs=1e-5)           # row 3, col 7
    assert x[1, 0, 0].item() == pytest.approx(expect(0, 1), abs=1e-5)
    assert x[2, 31, 31].item() == pytest.approx(expect(5, 2), abs=1e-5)           # blue = image id

    test = data.load_dataset("cifar10", "test", root)
    assert len(test) == 4 and test.targets.tolist() == [9, 8, 7, 6]
    assert test[0][0][2, 0, 0].item() == pytest.approx(expect(100, 2), abs=1e-5)


def _python2_batch(pixels: bytes, label: int) -> bytes:
    """A one-image batch as Python 2's cPickle wrote the official files (str opcodes, numpy.core)."""
    return (b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04"
            b"K\x00\x85U\x01b\x87Rq\x05(K\x01K\x01M\x00\x0c\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07"
            b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + len(pixels).to_bytes(4, "little")
            + pixels + b"tbU\x06labelsq\x08]q\t(K" + bytes([label]) + b"eu.")


def test_cifar_reads_python2_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(_python2_batch(cifar_images(1, first=77).tobytes(), label=4))
    x, y = data.load_dataset("cifar10", "test", tmp_path)[0]
    assert y == 4
    assert x[2, 10, 10].item() == pytest.approx((77 / 255 - CIFAR10_MEAN[2]) / CIFAR10_STD[2], abs=1e-5)


def test_cifar10_accepts_the_batches_folder_itself(cifar10_dir):
    root = cifar10_dir()
    direct = data.load_dataset("cifar10", "test", root / "cifar-10-batches-py")
    assert direct.targets.tolist() == [9, 8, 7, 6]


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, labels in (("train", [0, 42, 99]), ("test", [7, 77])):
        write_pickle(folder / split, {
            b"fine_labels": labels, b"coarse_labels": [0] * len(labels),
            b"data": cifar_images(len(labels), first=10)})
    train = data.load_dataset("cifar100", "train", tmp_path)
    assert train.info.num_classes == 100 and train.targets.tolist() == [0, 42, 99]
    assert data.load_dataset("cifar100", "test", tmp_path).targets.tolist() == [7, 77]


def test_cifar_truncated_batch_names_the_file(cifar10_dir):
    root = cifar10_dir()
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(CdpruneError, match="data_batch_3 is corrupt \\(truncated pickle\\)") as err:
        data.load_dataset("cifar10", "train", root)
    assert "\n" not in str(err.value) and "--download" in str(err.value)


def test_cifar_wrong_contents_are_reported(cifar10_dir):
    root = cifar10_dir()
    write_pickle(root / "cifar-10-batches-py" / "test_batch",
                  {b"labels": [1, 2, 3], b"data": cifar_images(4, first=0)})
    with pytest.raises(CdpruneError, match="test_batch is corrupt \\(3 labels for 4 images\\)"):
        data.load_dataset("cifar10", "test", root)
    write_pickle(root / "cifar-10-batches-py" / "test_batch",
                  {b"labels": [1, 2, 3, 10], b"data": cifar_images(4, first=0)})
    with pytest.raises(CdpruneError, match="labels outside 0..9"):
        data.load_dataset("cifar10", "test", root)


def test_cifar_missing_folder_or_dir(tmp_path):
    with pytest.raises(CdpruneError, match="cifar-10-batches-py/data_batch_1 is missing.*--download"):
        data.load_dataset("cifar10", "train", tmp_path)
    with pytest.raises(CdpruneError, match="--data-dir"):
        data.load_dataset("cifar100", "test")
    with pytest.raises(CdpruneError, match=re.escape(f"data_dir (--data-dir) {tmp_path / 'absent'} does not exist")):
        data.load_dataset("cifar10", "test", tmp_path / "absent")


class _Exploit:
    """Unpickling this would run a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_rejected_without_running(cifar10_dir, tmp_path):
    root = cifar10_dir()
    marker = tmp_path / "pwned"
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({b"labels": [0], b"data": _Exploit(marker)}, protocol=2))
    with pytest.raises(CdpruneError, match="test_batch is not a CIFAR batch: it asks to call .*system"):
        data.load_dataset("cifar10", "test", root)
    assert not marker.exists()

    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        cifar_mod.RestrictedUnpickler(io.BytesIO(pickle.dumps(eval)), encoding="bytes").load()


# --------------------------------------------------------------------------- CIFAR download

class _FakeResponse(io.BytesIO):
    """Just enough of an HTTP response for the downloader."""

    @property
    def length(self):
        return len(self.getvalue())


def _fake_archive(tmp_path) -> bytes:
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    write_pickle(src / "test_batch", {b"labels": [3, 1], b"data": cifar_images(2, first=0)})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    return buf.getvalue()


def test_download_verifies_md5_extracts_and_loads(tmp_path, monkeypatch):
    archive = _fake_archive(tmp_path)
    good = dataclasses.replace(cifar_mod.SOURCES["cifar10"], md5=hashlib.md5(archive).hexdigest())
    monkeypatch.setitem(cifar_mod.SOURCES, "cifar10", good)
    monkeypatch.setattr(cifar_mod.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(archive))
    dest = tmp_path / "dl"
    ds = data.load_dataset("cifar10", "test", dest, download=True)
    assert ds.targets.tolist() == [3, 1]
    assert (dest / "cifar-10-python.tar.gz").read_bytes() == archive
    assert not list(dest.glob("*.part"))


def test_download_with_wrong_md5_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar_mod.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"junk"))
    with pytest.raises(CdpruneError, match="is corrupt \\(MD5"):
        data.load_dataset("cifar10", "test", tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_download_without_network_says_where_to_place_files(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar_mod.urllib.request, "urlopen", offline)
    with pytest.raises(CdpruneError, match=f"could not download CIFAR-100 .*place the official.* in {tmp_path}") as err:
        data.load_dataset("cifar100", "train", tmp_path, download=True)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad_name", ["../evil", "/tmp/evil"])
def test_safe_extract_rejects_escaping_members(tmp_path, bad_name):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(bad_name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CdpruneError, match="unsafe entry"):
        cifar_mod.safe_extract(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil").exists()


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_idx_pixels_and_labels(tmp_path, gz):
    _idx_split(tmp_path, "train", 12, gz)
    _idx_split(tmp_path, "t10k", 5, gz, labels=[4, 3, 2, 1, 0])
    train = data.load_dataset("mnist", "train", tmp_path, augment="none")
    assert len(train) == 12 and train.targets.tolist() == [i % 10 for i in range(12)]
    x, y = train[6]
    assert x.shape == (1, 28, 28) and y == 6
    white, black = (1 - 0.1307) / 0.3081, (0 - 0.1307) / 0.3081
    assert x[0, 6, 21].item() == pytest.approx(white, abs=1e-5)
    assert torch.isclose(x, torch.tensor(black)).sum().item() == 28 * 28 - 1
    assert data.load_dataset("mnist", "test", tmp_path).targets.tolist() == [4, 3, 2, 1, 0]


def test_idx_found_in_named_subfolder(tmp_path):
    _idx_split(tmp_path / "fashion-mnist", "t10k", 10, gz=True)
    ds = data.load_dataset("fashion-mnist", "test", tmp_path)
    assert len(ds) == 10 and ds.info.mean == (0.2860,)


def test_idx_bad_magic_names_the_file(tmp_path):
    _idx_split(tmp_path, "t10k", 3, gz=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28)), 2049, gz=False)
    with pytest.raises(CdpruneError, match="t10k-images-idx3-ubyte is corrupt \\(magic number 2049, expected 2051\\)"):
        data.load_dataset("mnist", "test", tmp_path)


def test_idx_truncated_data_names_the_file(tmp_path):
    _idx_split(tmp_path, "t10k", 3, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(CdpruneError, match="t10k-images-idx3-ubyte.gz is corrupt .*needs 2352"):
        data.load_dataset("mnist", "test", tmp_path)


def test_idx_count_mismatch_names_both_files(tmp_path):
    _idx_split(tmp_path, "t10k", 4, gz=False, labels=[1, 2, 3])
    with pytest.raises(CdpruneError, match="t10k-labels-idx1-ubyte has 3 labels but .*t10k-images-idx3-ubyte has 4"):
        data.load_dataset("mnist", "test", tmp_path)


def test_idx_missing_file_is_reported(tmp_path):
    _idx_split(tmp_path, "t10k", 3, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(CdpruneError) as err:
        data.load_dataset("mnist", "test", tmp_path)
    assert f"{tmp_path} lacks t10k-labels-idx1-ubyte[.gz] (also looked in" in str(err.value)
    assert "t10k-images" not in str(err.value)  # the file that is there is not reported missing
    with pytest.raises(CdpruneError, match="--data-dir"):
        data.load_dataset("mnist", "test")


def test_idx_found_in_torchvision_layout(tmp_path):
    _idx_split(tmp_path / "FashionMNIST" / "raw", "train", 4, gz=False)
    assert len(data.load_dataset("fashion-mnist", "train", tmp_path)) == 4


@pytest.fixture
def system_fashion_mnist(tmp_path, monkeypatch):
    """A stand-in system folder that holds both Fashion-MNIST splits, so that a fallback to it
    would succeed whether or not the real one is installed."""
    system = tmp_path / "system"
    _idx_split(system, "train", 6, gz=True)
    _idx_split(system, "t10k", 3, gz=True)
    monkeypatch.setattr(idx_mod, "SYSTEM_DIRS", {"fashion-mnist": system})
    return system


def test_explicit_data_dir_without_the_files_never_falls_back(tmp_path, system_fashion_mnist):
    empty = tmp_path / "mine"
    empty.mkdir()
    (empty / "fashion-mnist").mkdir()  # a known sub-folder, itself empty
    with pytest.raises(CdpruneError) as err:
        data.load_dataset("fashion-mnist", "train", empty)
    message = str(err.value)
    assert message.startswith(f"Fashion-MNIST train split not found in data_dir (--data-dir) {empty}: {empty} lacks "
                              "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] (also looked in "
                              f"{empty / 'fashion-mnist'} or {empty / 'FashionMNIST' / 'raw'})")
    assert "\n" not in message and "leave data_dir (--data-dir) out" in message


def test_explicit_data_dir_names_the_sub_folder_holding_half_a_split(tmp_path, system_fashion_mnist):
    _idx_split(tmp_path / "mine" / "fashion-mnist", "t10k", 3, gz=False)
    (tmp_path / "mine" / "fashion-mnist" / "t10k-images-idx3-ubyte").unlink()
    half = tmp_path / "mine" / "fashion-mnist"
    with pytest.raises(CdpruneError, match=re.escape(f"{half} lacks t10k-images-idx3-ubyte[.gz] (also looked in")):
        data.load_dataset("fashion-mnist", "test", tmp_path / "mine")


def test_explicit_data_dir_that_is_missing_or_a_file(tmp_path, system_fashion_mnist):
    absent, file = tmp_path / "absent", tmp_path / "file"
    with pytest.raises(CdpruneError, match=f"^{re.escape(f'data_dir (--data-dir) {absent} does not exist; put the')} "
                                           f"official IDX files .* in {re.escape(str(absent))}"):
        data.load_dataset("fashion-mnist", "test", absent)
    file.write_text("not a folder")
    with pytest.raises(CdpruneError, match=f"^{re.escape(f'data_dir (--data-dir) {file} is not a folder; ')}"):
        data.load_dataset("fashion-mnist", "test", file)


def test_system_folder_is_used_only_without_data_dir(system_fashion_mnist):
    assert len(data.load_dataset("fashion-mnist", "train")) == 6
    assert len(data.load_dataset("fashion-mnist", "test")) == 3
    assert len(data.load_dataset("fashion-mnist", "test", system_fashion_mnist)) == 3


def test_missing_system_folder_names_it_and_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_mod, "SYSTEM_DIRS", {"fashion-mnist": tmp_path / "nowhere"})
    with pytest.raises(CdpruneError) as err:
        data.load_dataset("fashion-mnist", "test")
    assert str(err.value).startswith(f"Fashion-MNIST test split not found: {tmp_path / 'nowhere'} lacks "
                                     "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]; run apt-get "
                                     "install -y dataset-fashion-mnist or pass data_dir (--data-dir) DIR")


def test_debian_fashion_mnist_test_split_or_how_to_install_it():
    """Checks the real files where Debian's package is installed, else the error that says how to get them."""
    system = idx_mod.SYSTEM_DIRS["fashion-mnist"]
    if not (system / "t10k-images-idx3-ubyte.gz").is_file() and not (system / "t10k-images-idx3-ubyte").is_file():
        how = f"{re.escape(str(system))} lacks .*apt-get install -y dataset-fashion-mnist"
        with pytest.raises(CdpruneError, match=how):
            data.load_dataset("fashion-mnist", "test")
        return
    ds = data.load_dataset("fashion-mnist", "test")
    assert len(ds) == 10000 and ds.info.num_classes == 10
    assert torch.bincount(ds.targets).tolist() == [1000] * 10
    images, labels = data.as_tensors(ds)
    assert images.shape == (10000, 1, 28, 28)
    # The published constants should normalise the real data to about zero mean, unit std.
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05


# --------------------------------------------------------------------------- subset

def test_subset_is_balanced_and_deterministic():
    a = data.load_dataset("synthetic", "train", subset=25, seed=3)
    b = data.load_dataset("synthetic", "train", subset=25, seed=3)
    c = data.load_dataset("synthetic", "train", subset=25, seed=4)
    assert torch.bincount(a.targets).tolist() == [3] * 5 + [2] * 5
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.images, c.images)
    assert len(data.load_dataset("synthetic", "test", subset=10_000)) == 256


@pytest.mark.parametrize("n", [0, -5, 9])
def test_subset_too_small_is_an_error(n):
    with pytest.raises(CdpruneError, match=f"subset={n}"):
        data.load_dataset("synthetic", "test", subset=n)


def test_subset_fills_a_short_class_from_the_others():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 1)
    picked = balanced_subset(labels, 9, 3, seed=0)
    assert np.bincount(labels[picked]).tolist() == [4, 4, 1]
    assert np.array_equal(picked, balanced_subset(labels, 9, 3, seed=0))


# --------------------------------------------------------------------------- augmentation

def test_augmentation_changes_pixels_not_shape_and_is_seeded():
    train = data.load_dataset("synthetic", "train")
    plain, _ = data.as_tensors(train)
    torch.manual_seed(0)
    first = [train[i][0] for i in range(16)]
    assert all(x.shape == (3, 32, 32) for x in first)
    assert any(not torch.equal(x, plain[i]) for i, x in enumerate(first))
    torch.manual_seed(0)
    again = [train[i][0] for i in range(16)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_test_split_and_augment_none_are_unchanged():
    test = data.load_dataset("synthetic", "test")
    images, labels = data.as_tensors(test)
    assert test.augment == "none"
    assert all(torch.equal(test[i][0], images[i]) and test[i][1] == labels[i] for i in range(8))
    train = data.load_dataset("synthetic", "train", augment="none")
    assert torch.equal(train[3][0], data.as_tensors(train)[0][3])


def test_registered_datasets_keep_their_augmentation_as_data_not_by_name(tmp_path):
    defaults = {name: (data.dataset_info(name).augment, data.dataset_info(name).pad) for name in data.DATASETS}
    assert defaults == {"cifar10": ("crop-flip", 4), "cifar100": ("crop-flip", 4), "fashion-mnist": ("crop-flip", 2),
                        "mnist": ("crop", 2), "synthetic": ("crop", 4)}
    assert len(data.dataset_info("cifar100").class_names) == 100
    assert data.dataset_info("mnist").class_names == tuple("0123456789")
    # The default draws exactly what random_crop_flip draws with that padding and flip, so seeded
    # training and resumed runs see the same augmented images as before augmentation became a setting.
    _idx_split(tmp_path, "train", 8, gz=False)
    for train, pad, flip in ((data.load_dataset("synthetic", "train", subset=10), 4, False),
                             (data.load_dataset("fashion-mnist", "train", tmp_path), 2, True),
                             (data.load_dataset("synthetic", "train", subset=10, augment="flip"), 0, True)):
        torch.manual_seed(7)
        got = [train[i][0] for i in range(len(train))]
        torch.manual_seed(7)
        want = [train.normalize(random_crop_flip(train.images[i], pad, flip)) for i in range(len(train))]
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    with pytest.raises(CdpruneError, match=r"augment \(--augment\) must be one of .* got False"):
        data.load_dataset("synthetic", "train", augment=False)


def test_random_crop_is_a_zero_padded_shift_and_flip():
    img = torch.randint(1, 256, (1, 6, 6), dtype=torch.uint8)   # no zeros, so padding is visible
    padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
    torch.manual_seed(1)
    seen_flip = seen_shift = False
    for _ in range(40):
        out = random_crop_flip(img, pad=2, flip=True)
        crops = [padded[:, y:y + 6, x:x + 6] for y in range(5) for x in range(5)]
        if any(torch.equal(out, c) for c in crops):
            seen_shift |= not torch.equal(out, img)
        else:
            assert any(torch.equal(out.flip(-1), c) for c in crops)
            seen_flip = True
    assert seen_flip and seen_shift


def test_as_tensors_on_subset_and_rejects_others():
    test = data.load_dataset("synthetic", "test")
    images, labels = data.as_tensors(Subset(test, [5, 2]))
    full_images, full_labels = data.as_tensors(test)
    assert torch.equal(images, full_images[[5, 2]]) and labels.tolist() == full_labels[[5, 2]].tolist()
    with pytest.raises(TypeError):
        data.as_tensors([(torch.zeros(3), 0)])
