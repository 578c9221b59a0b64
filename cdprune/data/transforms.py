"""Per-item augmentation and normalisation with plain torch ops (no PIL).

Randomness comes from torch's global RNG so that `torch.manual_seed` makes a
training run reproducible (DataLoader workers get seeds derived from it).
"""
from __future__ import annotations

import torch

# name -> (crop padding in pixels, horizontal flip). Digits must not be
# mirrored, clothes and natural images may be.
AUGMENTATION: dict[str, tuple[int, bool]] = {
    "cifar10": (4, True),
    "cifar100": (4, True),
    "fashion-mnist": (2, True),
    "mnist": (2, False),
    "synthetic": (4, False),
}


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
    """Maps uint8 pixels (0..255) to float32 `(x / 255 - mean) / std`, per channel."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        # One multiply-add per pixel instead of divide, subtract, divide.
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = mean_t / std_t

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """`images` is uint8 (..., C, H, W); returns float32 of the same shape."""
        out = images.to(torch.float32)
        return out.mul_(self.scale).sub_(self.shift)
