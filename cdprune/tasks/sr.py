"""sr: ×`scale` (2 or 4) super-resolution.

The input is the image shrunk by bicubic interpolation (antialiased) and enlarged back to full
size by bicubic interpolation, clamped to [0, 1]; the network restores the full-size image (as
VDSR and DnCNN do).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import CdpruneError
from ._registry import register_task
from ._restoration import RestorationTask

SCALES = (2, 4)  # the first is the default


@register_task
@dataclass(frozen=True)
class SuperResolution(RestorationTask):
    scale: int = SCALES[0]  # the down-sampling factor

    name = "sr"
    title = "super-resolution"
    options = ("scale",)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.scale, bool) or self.scale not in SCALES:
            raise CdpruneError(f"scale (--scale) must be one of {', '.join(map(str, SCALES))}, got {self.scale!r}")
        object.__setattr__(self, "scale", int(self.scale))

    def describe(self) -> str:
        return f"sr (×{self.scale} super-resolution from bicubic down-sampling, {self.loss.upper()} loss)"

    def check_data(self, info, data: str) -> None:
        if min(info.input_shape[1:]) < self.scale:  # shrunk below one pixel: silently another factor
            raise CdpruneError(f"the images are {'×'.join(map(str, info.input_shape[1:]))}, smaller than the "
                               f"×{self.scale} of super-resolution",
                               "use larger images (--input C,H,W) or a smaller factor (--scale)")

    def degrade(self, clean: torch.Tensor, index: int | None = None) -> torch.Tensor:
        h, w = clean.shape[-2:]
        small = F.interpolate(clean[None], size=(max(1, h // self.scale), max(1, w // self.scale)), mode="bicubic",
                              align_corners=False, antialias=True)
        return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
