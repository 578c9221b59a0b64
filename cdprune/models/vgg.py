"""VGG-16 with batch norm, CIFAR variant (Simonyan & Zisserman 2015; BN as in most CIFAR code).

`width` scales every conv (64 … 512 channels at 1.0), as MobileNet's width multiplier does. The README's main
job trains VGG-16 at width 0.5 (a quarter of the MACs): at full width a 2-core CPU could not bring it near
convergence on Fashion-MNIST within the job's four minutes (docs/results.md)."""
import torch.nn as nn

from . import register

# Channel counts; "M" is a 2×2 max-pool.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, config=VGG16, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        if not width > 0:
            raise ValueError(f"VGG needs width > 0, got {width}")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                # ceil_mode keeps a 1×1 map at the end for 28×28 inputs too (28→14→7→4→2→1).
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                item = max(1, round(item * width))
                layers += [nn.Conv2d(channels, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("vgg16")
def vgg16(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    return VGG(VGG16, num_classes, in_channels, width)
