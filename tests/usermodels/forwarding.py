"""A factory shaped like timm's `create_model`: it names neither num_classes nor the channels and forwards
its keyword arguments to models that call the channels `in_chans`."""
import torch.nn as nn


class TinyNet(nn.Module):
    def __init__(self, num_classes=1000, in_chans=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def create_model(model_name, pretrained=False, **kwargs):
    return {"tinynet": TinyNet}[model_name](**kwargs)
