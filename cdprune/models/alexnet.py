"""AlexNet, CIFAR variant (Krizhevsky et al. 2012): five convs with 3×3 kernels, BN, three FC layers."""
import torch.nn as nn

from . import register


def conv_bn_relu(in_ch: int, out_ch: int):
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(in_channels, 64), nn.MaxPool2d(2, ceil_mode=True),
            *conv_bn_relu(64, 192), nn.MaxPool2d(2, ceil_mode=True),
            *conv_bn_relu(192, 384),
            *conv_bn_relu(384, 256),
            *conv_bn_relu(256, 256), nn.MaxPool2d(2, ceil_mode=True),
        )
        # A fixed 2×2 map keeps the classifier's size independent of the input resolution.
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 2 * 2, 1024), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(1024, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("alexnet")
def alexnet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return AlexNet(num_classes, in_channels)
