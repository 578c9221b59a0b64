"""CIFAR files in the official format (pickled dicts of numpy arrays), written by the tests themselves."""
import pickle

import numpy as np


def numpy1_protocol2(obj) -> bytes:
    """Pickle like the official files: protocol 2, numpy arrays named via numpy.core."""
    raw = pickle.dumps(obj, protocol=2)
    return raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def write_pickle(path, obj, style: str = "numpy1-protocol2") -> None:
    path.write_bytes(numpy1_protocol2(obj) if style == "numpy1-protocol2" else pickle.dumps(obj, protocol=5))


def cifar_images(n: int, first: int) -> np.ndarray:
    """n images (N x 3072 uint8) whose pixels encode (image id, channel, row, col) for checking."""
    imgs = np.zeros((n, 3, 32, 32), np.uint8)
    for i in range(n):
        imgs[i, 0] = 255                      # red plane saturated
        imgs[i, 1] = 0                        # green plane black
        imgs[i, 2] = (first + i) % 256        # blue plane carries the image id
        imgs[i, 1, 3, 7] = 200                # one marked green pixel at row 3, col 7
    return imgs.reshape(n, 3072)


def write_cifar10(parent, per_batch: int = 4, style: str = "numpy1-protocol2", test_labels=(9, 8, 7, 6)):
    """parent/cifar-10-batches-py: 5 train batches of `per_batch` images and a test batch."""
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(5):
        write_pickle(folder / f"data_batch_{b + 1}", {
            b"batch_label": b"training batch",
            b"labels": [(per_batch * b + i) % 10 for i in range(per_batch)],
            b"data": cifar_images(per_batch, first=per_batch * b),
            b"filenames": [b"x.png"] * per_batch,
        }, style)
    write_pickle(folder / "test_batch", {b"labels": list(test_labels),
                                         b"data": cifar_images(len(test_labels), first=100)}, style)
    return parent
