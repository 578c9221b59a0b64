"""Model registry: every architecture is one file and one `@register`.

    >>> from cdprune import models
    >>> net = models.create("vgg16", num_classes=10, in_channels=3)
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..errors import CdpruneError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator that adds a model constructor to the registry under `name`."""

    def add(fn: Callable[..., nn.Module]):
        _REGISTRY[name] = fn
        return fn

    return add


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal convs (fan-out), unit BN, small-normal linear layers: the torchvision init.

    PyTorch's default init leaves a plain 13-conv VGG barely learning for the
    first few hundred steps; this one trains from the first batch.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def names() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def create(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model from the registry."""
    if name not in _REGISTRY:
        raise CdpruneError(f"unknown model '{name}': choose one of {', '.join(names())}")
    if num_classes < 1 or in_channels < 1:
        raise CdpruneError("num_classes and in_channels must be positive integers")
    model = init_weights(_REGISTRY[name](num_classes=num_classes, in_channels=in_channels))
    # Lets a plan record how to rebuild its base model.
    model.cdprune_spec = {"name": name, "kwargs": {"num_classes": num_classes, "in_channels": in_channels}}
    return model


# Importing the architecture modules registers them.
from . import alexnet, mobilenetv2, resnet, vgg  # noqa: E402,F401
