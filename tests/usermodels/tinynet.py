"""The smallest prunable classifier: one 8-filter conv and a linear head, FLOPs easy to count by hand."""
import torch.nn as nn


class TinyNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).relu().mean((2, 3)))
