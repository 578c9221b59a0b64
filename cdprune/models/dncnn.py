"""DnCNN (Zhang, Zuo, Chen, Meng and Zhang, "Beyond a Gaussian Denoiser", IEEE TIP 2017).

`depth` 3×3 convs of `width` channels: conv + ReLU, then depth − 2 × (conv + BN + ReLU), then a
conv back to the image's channels. The convs predict the degradation (the noise, or what bicubic
up-sampling lost) and `forward` subtracts it from the input, so the model's output is the restored
image itself: a loss against the clean image trains exactly the paper's residual objective.
"""
import torch.nn as nn

from . import register


class DnCNN(nn.Module):
    def __init__(self, in_channels: int = 1, depth: int = 17, width: int = 64):
        super().__init__()
        if depth < 3 or width < 1:
            raise ValueError(f"DnCNN needs depth >= 3 and width >= 1, got depth={depth}, width={width}")
        layers = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.body(x)

    def init_output(self) -> None:
        """Start as the identity (the residual branch outputs zero), so the first steps refine the input
        instead of undoing a random residual many times the image's scale."""
        nn.init.zeros_(self.body[-1].weight)


@register("dncnn")
def dncnn(in_channels: int = 1, depth: int = 17, width: int = 64) -> DnCNN:
    """Image in, image of the same shape out; there is no classifier, so it takes no num_classes."""
    return DnCNN(in_channels, depth, width)
