"""A user's own images (class folders, .npz) and own torch Dataset, written inside each test and read back."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from cdprune import data
from cdprune.data import folders, loading
from cdprune.errors import CdpruneError
from imagefolders import NAMES, class_images, colour, flat_tree, split_tree, write_png


def _stats(pixels: np.ndarray, axes) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std, on the [0, 1] scale, of uint8 `pixels`, computed by hand with numpy."""
    x = pixels.astype(np.float64) / 255.0
    return tuple(np.atleast_1d(x.mean(axis=axes))), tuple(np.atleast_1d(x.std(axis=axes)))


def _normalised(pixels: np.ndarray, mean, std) -> np.ndarray:
    """C x H x W uint8 -> what an item should hold."""
    return (pixels / 255.0 - np.asarray(mean)[:, None, None]) / np.asarray(std)[:, None, None]


def _keys(ds) -> set:
    """(label, pixel bytes) of every image of an in-memory dataset: identifies images across splits."""
    return {(int(y), ds.images[i].numpy().tobytes()) for i, y in enumerate(ds.targets)}


# --------------------------------------------------------------------------- layouts, names, statistics

@pytest.mark.parametrize("held_out", ["val", "test"])
def test_train_and_val_folders_give_sorted_classes_and_training_statistics(tmp_path, held_out):
    images = class_images(9)
    root = split_tree(tmp_path / "parts", images, n_train=6)
    if held_out == "test":
        (root / "val").rename(root / "test")
    info = data.dataset_info(root)
    assert info.class_names == ("ankle_boot", "bag", "coat") == tuple(NAMES)
    assert (info.num_classes, info.input_shape, info.name) == (3, (1, 28, 28), str(root))
    mean, std = _stats(np.stack([images[n][:6] for n in NAMES]), axes=None)
    assert info.mean == pytest.approx(mean, abs=1e-12) and info.std == pytest.approx(std, abs=1e-12)

    train = data.load_dataset(root, "train", augment="none")
    test = data.load_dataset(root, "test", augment="crop-flip")
    assert (len(train), len(test)) == (18, 9)
    assert train.targets.dtype == torch.int64 and train.targets.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert test.info == train.info == info  # the test split is normalised with the training statistics
    assert test.augment == "none"           # only the training split is ever augmented
    x, y = test[4]                          # second file of val/bag/: image 7 of "bag"
    assert y == 1 and x.dtype == torch.float32 and x.shape == (1, 28, 28)
    assert np.allclose(x.numpy(), _normalised(images["bag"][7][None], info.mean, info.std), atol=1e-5)


def test_class_folders_alone_are_split_class_balanced_seeded_and_disjoint(tmp_path):
    images = class_images(10)
    root = flat_tree(tmp_path / "flat", images)

    def split(seed):
        return (data.load_dataset(root, "train", val_fraction=0.3, seed=seed),
                data.load_dataset(root, "test", val_fraction=0.3, seed=seed))

    train, test = split(5)
    assert torch.bincount(train.targets).tolist() == [7, 7, 7]
    assert torch.bincount(test.targets).tolist() == [3, 3, 3]
    everything = {(k, img.tobytes()) for k, name in enumerate(NAMES) for img in images[name]}
    assert _keys(train) | _keys(test) == everything and not _keys(train) & _keys(test)
    again_train, again_test = split(5)
    assert _keys(again_train) == _keys(train) and _keys(again_test) == _keys(test)
    assert _keys(split(6)[0]) != _keys(train)

    # Statistics come from the training images alone, and the test split shares them.
    mean, std = _stats(np.stack([np.frombuffer(b, np.uint8) for _, b in _keys(train)]), axes=None)
    assert train.info.mean == pytest.approx(mean, abs=1e-12) and train.info.std == pytest.approx(std, abs=1e-12)
    assert test.info.mean == train.info.mean


def test_input_shape_converts_channels_and_resizes(tmp_path):
    gray = class_images(3)
    root = tmp_path / "rgb"
    for split, picks in (("train", (0, 1)), ("val", (2,))):
        for name in NAMES:
            for i in picks:
                write_png(root / split / name / f"{i}.png", colour(gray[name][i])[2:26])   # 24 x 28 RGB

    native = data.dataset_info(root)
    assert native.input_shape == (3, 24, 28) and len(native.mean) == 3
    first = colour(gray["ankle_boot"][2])[2:26]
    x, _ = data.load_dataset(root, "test")[0]
    assert np.allclose(x.numpy(), _normalised(first.transpose(2, 0, 1), native.mean, native.std), atol=1e-5)

    # To grayscale at the same size: ITU-R 601 luma, as Pillow computes it.
    as_gray = data.load_dataset(root, "test", input_shape=(1, 24, 28))
    luma = first.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    pixels = x_to_pixels(as_gray[0][0], as_gray.info)
    assert pixels.shape == (1, 24, 28) and np.abs(pixels[0] - luma).max() <= 1.0

    # Resized bilinearly, and the statistics are those of the training images at the network size.
    small = data.load_dataset(root, "train", input_shape=(1, 12, 14))
    assert small.info.input_shape == (1, 12, 14) and small.images.shape == (6, 1, 12, 14)
    want = np.asarray(Image.fromarray(colour(gray["ankle_boot"][0])[2:26]).convert("L")
                      .resize((14, 12), Image.Resampling.BILINEAR))
    assert np.array_equal(small.images[0, 0].numpy(), want)
    mean, std = _stats(small.images.numpy(), axes=None)
    assert small.info.mean == pytest.approx(mean, abs=1e-12) and small.info.std == pytest.approx(std, abs=1e-12)

    # Grayscale images asked for as RGB get three equal channels.
    gray_root = split_tree(tmp_path / "gray", class_images(3), n_train=2)
    rgb = data.load_dataset(gray_root, "train", input_shape=(3, 28, 28), augment="none").images
    assert rgb.shape == (6, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])


def x_to_pixels(x: torch.Tensor, info) -> np.ndarray:
    """Undo an item's normalisation: back to pixel values 0..255."""
    mean, std = np.asarray(info.mean)[:, None, None], np.asarray(info.std)[:, None, None]
    return (x.numpy() * std + mean) * 255.0


def test_mixed_sizes_need_input_shape(tmp_path):
    root = split_tree(tmp_path / "mixed", class_images(3), n_train=2)
    odd = write_png(root / "val" / "coat" / "big.png", np.zeros((30, 30), np.uint8))
    with pytest.raises(CdpruneError) as err:
        data.dataset_info(root)
    message = str(err.value)
    assert "\n" not in message and str(odd) in message and "--input C,H,W" in message
    assert "28x28" in message and "30x30" in message
    assert data.load_dataset(root, "test", input_shape=(1, 28, 28)).images.shape == (4, 1, 28, 28)


# --------------------------------------------------------------------------- lazy decoding and the cache

def test_lazy_and_cached_folders_give_identical_items(tmp_path, monkeypatch):
    images = class_images(6)
    cached = data.load_dataset(split_tree(tmp_path / "a", images, 4), "train", subset=6, seed=1)
    monkeypatch.setattr(loading, "MAX_CACHE_BYTES", 0)   # every split is now too large to hold
    lazy = data.load_dataset(split_tree(tmp_path / "b", images, 4), "train", subset=6, seed=1)
    assert hasattr(cached, "images") and not hasattr(lazy, "images")
    assert (lazy.info.mean, lazy.info.std, lazy.info.class_names) == \
           (cached.info.mean, cached.info.std, cached.info.class_names)
    assert torch.equal(lazy.targets, cached.targets) and torch.bincount(lazy.targets).tolist() == [2, 2, 2]
    torch.manual_seed(3)
    from_files = [lazy[i] for i in range(len(lazy))]
    torch.manual_seed(3)
    from_memory = [cached[i] for i in range(len(cached))]
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(from_files, from_memory))
    assert torch.equal(data.as_tensors(lazy)[0], data.as_tensors(cached)[0])


def test_info_then_load_decode_each_image_once_until_the_folder_changes(tmp_path, monkeypatch):
    images = class_images(4)
    root = split_tree(tmp_path / "p", images, n_train=3)
    decoded = []
    real = folders.decode
    monkeypatch.setattr(folders, "decode", lambda path, shape: decoded.append(path) or real(path, shape))
    data.dataset_info(root)
    assert len(decoded) == 9            # the training images, for the statistics
    data.load_dataset(root, "train")
    data.load_dataset(root, "test")
    data.load_dataset(root, "test")
    assert len(decoded) == 12           # plus the test images, once
    write_png(root / "train" / "bag" / "new.png", images["bag"][3])
    assert len(data.load_dataset(root, "train")) == 10


# --------------------------------------------------------------------------- augmentation

def test_augmentation_is_a_setting_with_a_default_by_input_size(tmp_path):
    root = split_tree(tmp_path / "aug", class_images(9), n_train=6)
    assert data.dataset_info(root).augment == "crop"                           # below 32 x 32: no mirror
    assert data.dataset_info(root, input_shape=(1, 32, 32)).augment == "crop-flip"
    assert data.load_dataset(root, "train").augment == "crop"

    plain, _ = data.as_tensors(data.load_dataset(root, "train"))
    none = data.load_dataset(root, "train", augment="none")
    assert all(torch.equal(none[i][0], plain[i]) for i in range(len(none)))

    flip = data.load_dataset(root, "train", augment="flip")
    torch.manual_seed(0)
    seen = set()
    for i in range(len(flip)):
        x = flip[i][0]
        if torch.equal(x, plain[i]):
            seen.add("original")
        else:
            assert torch.equal(x, plain[i].flip(-1))
            seen.add("mirror")
    assert seen == {"original", "mirror"}

    with pytest.raises(CdpruneError, match=r"augment \(--augment\) must be one of none, flip, crop, crop-flip"):
        data.load_dataset(root, "train", augment="rotate")


# --------------------------------------------------------------------------- .npz

@pytest.mark.parametrize("layout", ["nhwc-uint8", "nchw-float"])
def test_npz_in_either_layout(tmp_path, layout):
    gray = class_images(5)
    x = np.stack([colour(img) for name in NAMES for img in gray[name]])    # N x 28 x 28 x 3
    y = np.repeat(np.arange(3), 5)
    train, test = np.arange(15) % 5 < 4, np.arange(15) % 5 == 4

    def stored(images):
        return images if layout == "nhwc-uint8" else images.transpose(0, 3, 1, 2).astype(np.float32) / 255

    path = tmp_path / "mine.npz"
    np.savez(path, x_train=stored(x[train]), y_train=y[train], x_test=stored(x[test]), y_test=y[test])
    info = data.dataset_info(path)
    assert info.class_names == ("0", "1", "2") and info.input_shape == (3, 28, 28)
    mean, std = _stats(x[train], axes=(0, 1, 2))
    assert info.mean == pytest.approx(mean, abs=1e-12) and info.std == pytest.approx(std, abs=1e-12)

    ds = data.load_dataset(path, "test")
    assert ds.targets.tolist() == [0, 1, 2] and ds.augment == "none"
    item, label = ds[1]
    assert label == 1
    assert np.allclose(item.numpy(), _normalised(x[test][1].transpose(2, 0, 1), mean, std), atol=1e-5)
    subset = data.load_dataset(path, "train", subset=6, seed=2)
    assert torch.bincount(subset.targets).tolist() == [2, 2, 2]
    small = data.load_dataset(path, "train", input_shape=(1, 14, 14))
    assert small.images.shape == (12, 1, 14, 14)


# --------------------------------------------------------------------------- bad data

def _corrupt_image(root):
    flat_tree(root, class_images(3))
    bad = root / "bag" / "broken.png"
    bad.write_bytes(b"this is not a picture")
    return root, bad, {}


def _truncated_image(root):
    flat_tree(root, class_images(3))
    bad = root / "coat" / "001.png"
    bad.write_bytes(bad.read_bytes()[:-200])   # header intact, pixels cut short
    return root, bad, {}


def _empty_class(root):
    flat_tree(root, class_images(3))
    (root / "dress").mkdir()
    (root / "dress" / "notes.txt").write_text("no images here")
    return root, root / "dress", {}


def _class_missing_from_val(root):
    split_tree(root, class_images(3), n_train=2)
    shutil.rmtree(root / "val" / "bag")
    return root, root / "val" / "bag", {}


def _no_class_folders(root):
    write_png(root / "a.png", np.zeros((28, 28), np.uint8))
    return root, root, {}


def _one_image_class(root):
    flat_tree(root, class_images(3))
    write_png(root / "dress" / "only.png", np.zeros((28, 28), np.uint8))
    return root, root / "dress", {}


def _missing_path(root):
    return root / "absent", root / "absent", {}


def _npz(root, **arrays):
    gray = class_images(2)
    x = np.stack([gray[name][i] for name in NAMES for i in range(2)])
    y = np.repeat(np.arange(3), 2)
    contents = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    contents.update(arrays)
    contents = {k: v for k, v in contents.items() if v is not None}
    root.mkdir()
    path = root / "data.npz"
    np.savez(path, **contents)
    return path, path, {}


def _npz_missing_key(root):
    return _npz(root, y_test=None)


def _npz_length_mismatch(root):
    return _npz(root, y_train=np.arange(5) % 3)


def _npz_label_out_of_range(root):
    return _npz(root, y_test=np.array([0, 1, 2, 7, 0, 1]))


def _npz_object_labels(root):
    return _npz(root, y_train=np.array([0, 1, 2, 0, 1, {"run": "code"}], dtype=object))


@pytest.mark.parametrize("build, words", [
    (_corrupt_image, "cannot read image"),
    (_truncated_image, "cannot read image"),
    (_empty_class, "holds no images"),
    (_class_missing_from_val, "'bag' is in"),
    (_no_class_folders, "no class folders"),
    (_one_image_class, "holds 1 image"),
    (_missing_path, "does not exist"),
    (_npz_missing_key, "lacks y_test"),
    (_npz_length_mismatch, "has 6 images but y_train has 5 labels"),
    (_npz_label_out_of_range, "label 7, outside 0..2"),
    (_npz_object_labels, "y_train cannot be read"),
])
def test_bad_data_is_one_line_naming_the_file_or_folder(tmp_path, build, words):
    data_path, culprit, kwargs = build(tmp_path / "mine")
    with pytest.raises(CdpruneError) as err:   # all a run does before its first training step
        data.dataset_info(data_path, **kwargs)
        data.load_dataset(data_path, "train", **kwargs)
        data.load_dataset(data_path, "test", **kwargs)
    message = str(err.value)
    assert "\n" not in message and str(culprit) in message and words in message


def test_bad_settings_name_the_api_and_cli_spelling(tmp_path):
    root = flat_tree(tmp_path / "s", class_images(3))
    with pytest.raises(CdpruneError, match=r"input_shape \(--input C,H,W\)"):
        data.dataset_info(root, input_shape=(2, 28, 28))
    with pytest.raises(CdpruneError, match=r"val_fraction \(--val-fraction\)"):
        data.load_dataset(root, "train", val_fraction=1.0)
    with pytest.raises(CdpruneError, match=r"fashion-mnist images are 1,28,28.*input_shape \(--input\)"):
        data.dataset_info("fashion-mnist", input_shape=(3, 32, 32))


# --------------------------------------------------------------------------- a user's own Dataset

class _Pairs(Dataset):
    """(image, label) items and no `.targets`; counts how often an item is read."""

    def __init__(self, items):
        self.items, self.reads = items, 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.reads += 1
        return self.items[i]


@pytest.mark.parametrize("kind", ["uint8", "float", "pil"])
def test_from_dataset_wraps_a_users_dataset(kind):
    gray = class_images(2)
    pixels = [gray[name][i] for name in NAMES for i in range(2)]
    as_image = {"uint8": lambda p: torch.from_numpy(p).unsqueeze(0),
                "float": lambda p: torch.from_numpy(p).unsqueeze(0).float() / 255,
                "pil": lambda p: Image.fromarray(colour(p)).convert("L")}[kind]
    pairs = _Pairs([(as_image(p), k // 2) for k, p in enumerate(pixels)])
    ds = data.from_dataset(pairs, num_classes=3, input_shape=(1, 28, 28), mean=(0.5,), std=(0.25,),
                           class_names=NAMES, name="parts")
    assert (ds.info.name, ds.info.class_names, ds.info.augment, len(ds)) == ("parts", tuple(NAMES), "none", 6)
    assert ds.targets.tolist() == [0, 0, 1, 1, 2, 2] and ds.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert pairs.reads == 6   # labels were read once, and then kept
    source = pixels[3] if kind != "pil" else np.asarray(Image.fromarray(colour(pixels[3])).convert("L"))
    x, y = ds[3]
    assert y == 1 and x.dtype == torch.float32
    assert np.allclose(x.numpy(), _normalised(source[None], (0.5,), (0.25,)), atol=1e-5)

    flipped = data.from_dataset(pairs, num_classes=3, input_shape=(1, 28, 28), mean=(0.5,), std=(0.25,),
                                augment="flip")
    torch.manual_seed(0)
    outcomes = set()
    for _ in range(12):
        out = flipped[3][0]
        outcomes.add("original" if torch.equal(out, x) else "mirror" if torch.equal(out, x.flip(-1)) else "other")
    assert outcomes == {"original", "mirror"}
    assert torch.equal(data.as_tensors(ds)[0][3], x)


def test_from_dataset_refuses_what_it_cannot_train_on():
    pairs = _Pairs([(torch.zeros(1, 28, 28, dtype=torch.uint8), 0), (torch.zeros(1, 28, 28, dtype=torch.uint8), 4)])
    ds = data.from_dataset(pairs, num_classes=3, input_shape=(1, 32, 32), mean=(0.5,), std=(0.25,))
    with pytest.raises(CdpruneError, match=r"item 0 of custom is 1x28x28 but input_shape is 1x32x32"):
        ds[0]
    ds = data.from_dataset(pairs, num_classes=3, input_shape=(1, 28, 28), mean=(0.5,), std=(0.25,))
    with pytest.raises(CdpruneError, match=r"item 1 of custom has label 4, outside 0..2"):
        ds.targets
    with pytest.raises(CdpruneError, match="mean has 1 values but input_shape has 3 channels"):
        data.from_dataset(pairs, num_classes=3, input_shape=(3, 28, 28), mean=(0.5,), std=(0.25,) * 3)
