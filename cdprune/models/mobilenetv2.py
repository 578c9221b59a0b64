"""MobileNetV2, CIFAR variant (Sandler et al. 2018): stride-1 stem and first stride-2 stage made stride 1."""
import torch.nn as nn

from . import register

# (expansion, out_channels, blocks, stride) per stage; strides adapted to 32×32 inputs.
CIFAR_STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True):
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int):
        super().__init__()
        hidden = in_ch * expansion
        layers = conv_bn(in_ch, hidden, 1) if expansion != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += conv_bn(hidden, out_ch, 1, relu=False)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers = conv_bn(in_channels, 32, 3)
        channels = 32
        for expansion, out_ch, blocks, stride in CIFAR_STAGES:
            for i in range(blocks):
                layers.append(InvertedResidual(channels, out_ch, expansion, stride if i == 0 else 1))
                channels = out_ch
        layers += conv_bn(channels, 1280, 1)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("mobilenetv2")
def mobilenetv2(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return MobileNetV2(num_classes, in_channels)
