"""AlexNet, CIFAR variant (Krizhevsky et al. 2012): five convs with 3×3 kernels, BN, three FC layers.

`width` scales every layer (64-192-384-256-256 convs, 1024-wide FCs at 1.0), as MobileNet's width
multiplier does: AlexNet at width 0.25 trained about 12× faster on a 2-core CPU, small enough to train to
convergence on all of Fashion-MNIST in minutes (benchmarks/rank_methods.py)."""
import torch.nn as nn

from . import register


def conv_bn_relu(in_ch: int, out_ch: int):
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        if not width > 0:
            raise ValueError(f"AlexNet needs width > 0, got {width}")
        c1, c2, c3, c4, c5, hidden = (max(1, round(n * width)) for n in (64, 192, 384, 256, 256, 1024))
        self.features = nn.Sequential(
            *conv_bn_relu(in_channels, c1), nn.MaxPool2d(2, ceil_mode=True),
            *conv_bn_relu(c1, c2), nn.MaxPool2d(2, ceil_mode=True),
            *conv_bn_relu(c2, c3),
            *conv_bn_relu(c3, c4),
            *conv_bn_relu(c4, c5), nn.MaxPool2d(2, ceil_mode=True),
        )
        # A fixed 2×2 map keeps the classifier's size independent of the input resolution.
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(c5 * 2 * 2, hidden), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("alexnet")
def alexnet(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    return AlexNet(num_classes, in_channels, width)
