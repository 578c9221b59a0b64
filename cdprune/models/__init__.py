"""Model registry and model references: every architecture is one file and one `@register`,
and a user's own network is reached by reference.

    >>> from cdprune import models
    >>> net = models.create("vgg16", num_classes=10, in_channels=3)
    >>> net = models.create("mynet.py:EdgeNet", num_classes=10, in_channels=1, model_args={"width": 0.5})
    >>> net = models.create("timm:create_model", model_args={"model_name": "resnet18", "num_classes": 10, "in_chans": 3})
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Callable

import torch.nn as nn

from .. import registry
from ..errors import CdpruneError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator that adds a model constructor to the registry under `name`."""

    def add(fn: Callable[..., nn.Module]):
        return registry.add(_REGISTRY, name, fn, "model")

    return add


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal convs (fan-out), unit BN, small-normal linear layers: the torchvision init.

    PyTorch's default init leaves a plain 13-conv VGG barely learning for the
    first few hundred steps; this one trains from the first batch. A model with an
    `init_output()` method gets it called last: the restoration models use it to start
    as the identity.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    if callable(getattr(model, "init_output", None)):
        model.init_output()
    return model


def names() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def is_registered(ref: str) -> bool:
    return ref in _REGISTRY


def parse_model_args(text: str | None) -> dict:
    """--model-args '{"width": 0.5}' -> {"width": 0.5}: a JSON object of keyword arguments."""
    if not text:
        return {}
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CdpruneError(f"model arguments {text!r} are not JSON ({exc.msg})", "give an object, e.g. "
                           """'{"width": 0.5}' (--model-args)""") from None
    if not isinstance(args, dict):
        raise CdpruneError(f"model arguments {text!r} are not a JSON object", "give keyword arguments, e.g. "
                           """'{"width": 0.5}' (--model-args)""")
    return args


def resolve(ref: str) -> Callable[..., nn.Module]:
    """The constructor a model reference names: a registered name, 'package.module:callable' or
    'path/to/file.py:callable'. Importing runs the module's code, so only call this with a reference
    the user gave in this call, never with one read from a file (docs/design.md, "File formats")."""
    if ref in _REGISTRY:
        return _REGISTRY[ref]
    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr:
        raise CdpruneError(f"unknown model '{ref}'", f"choose one of {', '.join(names())}, or give a reference "
                           "'package.module:callable' or 'path/to/file.py:callable'")
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _import_file(Path(where).expanduser(), ref)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:  # a missing package, or one that fails as it loads (built for another torch)
            raise CdpruneError(f"cannot import {where} for model '{ref}' ({type(exc).__name__}: {_first_line(exc)})",
                               "install it, or check the reference") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise CdpruneError(f"{where} has no '{attr}' for model '{ref}'", "check the name after the colon",
                               option="model")
    if not callable(fn):
        raise CdpruneError(f"'{attr}' in {where} is not callable", "name a class or function that builds the model")
    return fn


def _import_file(path: Path, ref: str):
    if not path.is_file():
        raise CdpruneError(f"model file {path} not found (model '{ref}')", "check the path before the colon",
                           option="model")
    if path.suffix != ".py":
        raise CdpruneError(f"model file {path} is not a Python file (model '{ref}')", "name a .py file before the colon")
    # One module per file path, so the same file imported twice yields the same classes.
    name = "cdprune_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # The file's folder is importable while it runs, so that it can import its neighbours.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any failure is theirs to fix, shown in one line
        del sys.modules[name]
        raise CdpruneError(f"importing {path} failed ({type(exc).__name__}: {_first_line(exc)})", "fix the file") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def source_digest(model: nn.Module) -> str | None:
    """A digest of the source files that define the model's own module classes (a user's model file and the
    files it imports them from), so that a file whose `forward` changed is told apart from the one a run was
    trained with although its layers keep their names and shapes. None for a model built from torch's and
    cdprune's classes alone: those change with the installed versions, not with the user's code."""
    files = set()
    for module in model.modules():
        top = type(module).__module__.split(".")[0]
        if top not in ("torch", "cdprune"):
            try:
                files.add(inspect.getsourcefile(type(module)))
            except (TypeError, OSError):  # a class without a source file (built in C, or made at run time)
                files.add(f"{type(module).__module__}.{type(module).__qualname__}")
    if not files:
        return None
    digest = hashlib.sha256()
    for name in sorted(f for f in files if f):
        path = Path(name)
        digest.update(path.read_bytes() if path.is_file() else name.encode())
    return "sha256:" + digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def create(ref: str, num_classes: int = 10, in_channels: int = 3, model_args: dict | None = None) -> nn.Module:
    """Build a fresh model from a reference (see `resolve`) with `model_args` as keyword arguments.

    `num_classes` and `in_channels` are passed too where the constructor names them and
    `model_args` does not set them; a constructor that only takes **kwargs gets neither, since it
    may forward them to one that calls them otherwise (timm's `create_model` forwards to models that
    take `in_chans`). Registered models get the project's initialisation; a
    user's constructor keeps its own.
    """
    if num_classes < 1 or in_channels < 1:
        raise CdpruneError("num_classes and in_channels must be positive integers")
    fn = resolve(ref)
    kwargs = dict(model_args or {})
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature: pass only what was given
        params = {}
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if key not in kwargs and key in params and params[key].kind != inspect.Parameter.POSITIONAL_ONLY:
            kwargs[key] = value
    try:
        model = fn(**kwargs)
    except Exception as exc:  # the constructor is the user's code, or model_args do not fit it
        raise CdpruneError(f"building model '{ref}' with {kwargs} failed ({type(exc).__name__}: {_first_line(exc)})",
                           "check the model arguments (--model-args)") from None
    if not isinstance(model, nn.Module):
        raise CdpruneError(f"model '{ref}' returned {type(model).__name__}, not a torch.nn.Module")
    if ref in _REGISTRY:
        init_weights(model)
    # Lets a plan and a run record how to rebuild the base model.
    model.cdprune_spec = {"name": ref, "kwargs": kwargs}
    return model


# Importing the architecture modules registers them.
from . import alexnet, dncnn, mobilenetv2, resnet, unet, vgg  # noqa: E402,F401
