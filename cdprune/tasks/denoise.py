"""denoise: additive Gaussian noise of standard deviation `noise` on the 0–255 scale (default 25).

Training images get fresh noise every time they are drawn; test image i always gets the same
noise (a generator seeded by i), so the test PSNR is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import CdpruneError
from ._registry import register_task
from ._restoration import RestorationTask

TEST_NOISE_SEED = 1_000_003  # test image i gets its noise from a generator seeded with this + i
DEFAULT_NOISE = 25.0


@register_task
@dataclass(frozen=True)
class Denoise(RestorationTask):
    noise: float = DEFAULT_NOISE  # σ on the 0–255 scale

    name = "denoise"
    title = "Gaussian denoising"
    options = ("noise",)

    def __post_init__(self):
        super().__post_init__()
        noise = self.noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (math.isfinite(noise) and noise > 0):
            raise CdpruneError(f"noise (--noise) must be a finite number > 0, the σ on the 0–255 scale, got {noise!r}")
        object.__setattr__(self, "noise", float(noise))

    def describe(self) -> str:
        return f"denoise (Gaussian noise σ = {self.noise:g} on 0–255, {self.loss.upper()} loss)"

    def degrade(self, clean: torch.Tensor, index: int | None = None) -> torch.Tensor:
        generator = None if index is None else torch.Generator().manual_seed(TEST_NOISE_SEED + index)
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
        return clean + noise * (self.noise / 255.0)
