"""Per-item augmentation and normalisation with plain torch ops (no PIL).

Augmentation is a setting of the run, one of `AUGMENTATIONS`; a dataset only
supplies the default (`DatasetInfo.augment`). Randomness comes from torch's
global RNG so that `torch.manual_seed` makes a training run reproducible
(DataLoader workers get seeds derived from it) and a resumed run draws the same
stream.
"""
from __future__ import annotations

import torch

from ..errors import CdpruneError

#: "none"; "flip": mirror left-right with probability 1/2; "crop": shift by a random crop of the image
#: zero-padded by `crop_padding` pixels; "crop-flip": crop, then flip.
AUGMENTATIONS: tuple[str, ...] = ("none", "flip", "crop", "crop-flip")


def crop_padding(input_shape: tuple[int, ...]) -> int:
    """Zero padding of the random crop: 4 pixels for inputs of at least 32 x 32, else 2."""
    return 4 if min(input_shape[-2:]) >= 32 else 2


def check_augment(augment) -> str:
    """`augment` if it names an augmentation, else a CdpruneError."""
    if not isinstance(augment, str) or augment not in AUGMENTATIONS:
        raise CdpruneError(f"augment (--augment) must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    return augment


class Augment:
    """The augmentation `mode` for images of `input_shape`, as a callable on one (C, H, W) image."""

    def __init__(self, mode: str, input_shape: tuple[int, ...]):
        self.mode = check_augment(mode)
        self.pad = crop_padding(input_shape) if "crop" in mode else 0
        self.flip = "flip" in mode

    def __bool__(self) -> bool:
        return self.mode != "none"

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return img
        return random_crop_flip(img, self.pad, self.flip)


def random_crop_flip(img: torch.Tensor, pad: int, flip: bool) -> torch.Tensor:
    """Random crop of `img` (C, H, W) zero-padded by `pad` pixels, then an optional 50 % mirror.

    Equivalent to padding with zeros and cropping back to H x W, but it only
    copies the overlapping window instead of allocating the padded image.
    """
    out = img
    if pad > 0:
        _, h, w = img.shape
        dy, dx = torch.randint(-pad, pad + 1, (2,)).tolist()
        out = torch.zeros_like(img)
        out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
            img[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    if flip and torch.rand(()).item() < 0.5:
        out = out.flip(-1)
    return out


class Normalize:
    """Maps pixels to float32 `(x - mean) / std`, per channel: uint8 pixels are 0..255 (x = v / 255),
    float pixels are already on the [0, 1] scale."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        # One multiply-add per pixel instead of divide, subtract, divide.
        self.scale = 1.0 / (255.0 * std_t)
        self.float_scale = 1.0 / std_t
        self.shift = mean_t / std_t

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """`images` is uint8 or float (..., C, H, W); returns float32 of the same shape."""
        scale = self.scale if images.dtype == torch.uint8 else self.float_scale
        out = images.to(torch.float32, copy=True)
        return out.mul_(scale).sub_(self.shift)
