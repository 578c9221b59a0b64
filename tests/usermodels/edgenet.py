"""A user's own 30-line CNN, as an edge engineer would write it: BN, a residual add, a depthwise separable block.

The tests reach it only by reference (tests/usermodels/edgenet.py:EdgeNet), never by import.
"""
import torch.nn as nn


def conv_bn(c_in, c_out, k=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class EdgeNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=10, width=1.0):
        super().__init__()
        c1, c2 = int(16 * width), int(32 * width)
        self.stem = conv_bn(in_channels, c1)
        self.res = nn.Sequential(conv_bn(c1, c1), nn.Conv2d(c1, c1, 3, 1, 1, bias=False), nn.BatchNorm2d(c1))
        self.separable = nn.Sequential(conv_bn(c1, c1, 3, 2, groups=c1), conv_bn(c1, c2, 1))
        self.tail = conv_bn(c2, c2, 3, 2)
        self.head = nn.Linear(c2, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = (x + self.res(x)).relu()
        x = self.tail(self.separable(x))
        return self.head(x.mean((2, 3)))
