"""A small U-Net (Ronneberger, Fischer and Brox 2015) for image restoration.

`levels` resolutions (default 3: H, H/2, H/4), two 3×3 conv + BN + ReLU blocks per level,
2×2 max-pooling down, 2×2 stride-2 `ConvTranspose2d` up, skips joined by concatenation, a 1×1 conv
to the image's channels, and a global residual: the output is the input plus the network's
correction. An input whose sides are not multiples of 2^(levels − 1) is zero-padded at the bottom
and right and the output cropped back, so any size works (28×28 needs no padding at 3 levels).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 32, levels: int = 3):
        super().__init__()
        if not 2 <= levels <= 5 or width < 1:
            raise ValueError(f"UNet needs 2 <= levels <= 5 and width >= 1, got levels={levels}, width={width}")
        widths = [width * 2 ** i for i in range(levels)]
        self.levels = levels
        self.down = nn.ModuleList([_block(in_channels, widths[0])] +
                                  [_block(widths[i - 1], widths[i]) for i in range(1, levels)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2)
                                 for i in range(levels - 1, 0, -1)])
        self.merge = nn.ModuleList([_block(2 * widths[i - 1], widths[i - 1]) for i in range(levels - 1, 0, -1)])
        self.out = nn.Conv2d(widths[0], in_channels, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        step = 2 ** (self.levels - 1)
        padded = F.pad(x, (0, -w % step, 0, -h % step))
        skips, y = [], padded
        for i, block in enumerate(self.down):
            if i:
                y = F.max_pool2d(y, 2)
            y = block(y)
            skips.append(y)
        skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([up(y), skips.pop()], dim=1))
        return x + self.out(y)[..., :h, :w]

    def init_output(self) -> None:
        """Start as the identity: the correction is zero until training moves the last conv."""
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)


@register("unet")
def unet(in_channels: int = 1, width: int = 32, levels: int = 3) -> UNet:
    """Image in, image of the same shape out; there is no classifier, so it takes no num_classes."""
    return UNet(in_channels, width, levels)
