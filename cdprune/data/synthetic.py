"""Small generated dataset for smoke tests: learnable, deterministic, no files needed."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIZES = {"train": 512, "test": 256}
_PATTERN_SEED = 20240601              # the class patterns, shared by both splits
_SPLIT_SEEDS = {"train": 1, "test": 2}  # the noise and label order, different per split


def make_synthetic(split: str, num_classes: int = 10,
                   shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x C x H x W) and balanced labels (int64, N) for `split`.

    Each class has a fixed smooth colour pattern (a random 4 x 4 grid
    upsampled to H x W, so a few pixels of crop jitter keep it recognisable);
    every image is its class pattern plus independent pixel noise of similar
    strength, so a model must learn the patterns rather than memorise pixels.
    Pixel values are centred on 0.5 with a spread of roughly 0.25 (x 255).
    """
    c, h, w = shape
    g = torch.Generator().manual_seed(_PATTERN_SEED)
    patterns = F.interpolate(torch.randn(num_classes, c, 4, 4, generator=g), size=(h, w),
                             mode="bilinear", align_corners=False)
    patterns /= patterns.std(dim=(1, 2, 3), keepdim=True)

    g.manual_seed(_SPLIT_SEEDS[split])
    n = SIZES[split]
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    noise = torch.randn(n, c, h, w, generator=g)
    pixels = 0.5 + 0.18 * (patterns[labels] + noise)
    images = (pixels.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return images, labels.to(torch.int64)
