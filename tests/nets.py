"""Small user-defined networks with the couplings a pruner must respect."""
import torch
import torch.nn as nn


class ResidualNet(nn.Module):
    """Two convs whose outputs meet in a residual add, then a linear head."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
                                  nn.Conv2d(24, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        return self.head(x.mean((2, 3)))


class SeparableNet(nn.Module):
    """A pointwise conv followed by a depthwise conv (MobileNet-style)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.head = nn.Linear(24, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class ConcatNet(nn.Module):
    """Two branches concatenated on channels, flattened into a linear layer."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 20, 5, padding=2), nn.ReLU())
        self.mix = nn.Conv2d(32, 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(16 * 4, num_classes)

    def forward(self, x):
        x = self.mix(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.head(self.pool(x).flatten(1))


class LinearOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


class FullyConv(nn.Module):
    """Its only conv produces the output: nothing may be pruned."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


USER_NETS = {"residual": ResidualNet, "separable": SeparableNet, "concat": ConcatNet}


class EnergyNet(nn.Module):
    """Three convs whose energy shares differ from their params, FLOPs and memory shares (tests/test_energy.py)."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 8, 1, bias=False)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.c3 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        return self.head(x.mean((2, 3)))
