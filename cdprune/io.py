"""Crash-safe file writes and pickle-free weight/checkpoint files.

Every writer here goes through `atomic_write_bytes`: the data lands in a
temporary file next to the target, is fsynced, and then renamed over the
target. A reader (or a resumed run after Ctrl-C or a power cut) therefore
sees either the old file or the new one, never half of one.

Weights and checkpoints are safetensors files, so loading them never
unpickles anything. A checkpoint holds three groups of tensors plus JSON:

    model.<name>                  the model's state_dict
    optim.state.<i>.<key>         optimizer state tensors (e.g. momentum_buffer)
    meta.<key>                    tensor-valued meta entries (e.g. RNG states)

and the safetensors metadata entry "cdprune" holds, as a JSON string, the
optimizer's param_groups, its non-tensor state, and the JSON-valued meta.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .errors import CdpruneError

_META_KEY = "cdprune"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is never seen half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 lets the umask decide permissions, as a plain
    # open() would (tempfile.mkstemp would force 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temp file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` as UTF-8, atomically; newlines are written as given."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as JSON (indent 2, keys in insertion order, trailing newline)."""
    # Serialise first, so an unserialisable object fails before touching disk.
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy that shares storage with nothing (safetensors needs both)."""
    return t.detach().cpu().contiguous().clone()


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Save a state_dict (all tensors, BN counters included) as a safetensors file.

    `metadata` is optional string->string information stored in the header.
    """
    tensors = {name: _plain(t) for name, t in state_dict.items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file into a dict of CPU tensors."""
    try:
        return load_file(str(path), device="cpu")
    except FileNotFoundError:
        raise CdpruneError(f"weights file not found: {path}") from None
    except (SafetensorError, OSError) as e:
        raise CdpruneError(f"cannot read weights file {path}: {e}") from None


def save_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, meta: dict[str, Any]) -> None:
    """Atomically save model, optimizer and `meta` to one safetensors file.

    `meta` values are either tensors (stored as tensors) or JSON-serialisable.
    """
    tensors = {f"model.{k}": _plain(v) for k, v in model.state_dict().items()}
    header: dict[str, Any] = {"meta": {}, "optim": None}
    for key, value in meta.items():
        if isinstance(value, torch.Tensor):
            tensors[f"meta.{key}"] = _plain(value)
        else:
            header["meta"][key] = value
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for i, state in sd["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.state.{i}.{key}"] = _plain(value)
                else:
                    scalars.setdefault(str(i), {})[key] = value
        header["optim"] = {"param_groups": sd["param_groups"], "state": scalars}
    data = safetensors_bytes(tensors, metadata={"format": "pt", _META_KEY: json.dumps(header)})
    atomic_write_bytes(path, data)


def _read_checkpoint(path: str | Path, with_tensors: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checkpoint's JSON header and (optionally) all its tensors, on CPU."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = json.loads((f.metadata() or {})[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except FileNotFoundError:
        raise CdpruneError(f"checkpoint not found: {path}") from None
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise CdpruneError(f"{path} is not a readable cdprune checkpoint ({e!r})") from None
    return header, tensors


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The JSON-valued part of a checkpoint's meta, without loading any tensor."""
    return _read_checkpoint(path, with_tensors=False)[0]["meta"]


def load_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore `model` (and `optimizer`) in place; return the full meta dict.

    Tensor-valued meta entries come back as CPU tensors. A model or optimizer
    that does not match the checkpoint raises CdpruneError.
    """
    header, tensors = _read_checkpoint(path, with_tensors=True)
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "meta": {}}
    for name, t in tensors.items():
        group, _, rest = name.partition(".")
        if group in groups:
            groups[group][rest] = t
    try:
        model.load_state_dict(groups["model"])
        if optimizer is not None:
            if header["optim"] is None:
                raise ValueError("the checkpoint holds no optimizer state")
            state: dict[int, dict[str, Any]] = {int(i): dict(s) for i, s in header["optim"]["state"].items()}
            for name, t in groups["optim"].items():  # name is "state.<i>.<key>"
                _, i, key = name.split(".", 2)
                state.setdefault(int(i), {})[key] = t
            optimizer.load_state_dict({"state": state, "param_groups": header["optim"]["param_groups"]})
    except (RuntimeError, ValueError, KeyError) as e:
        # load_state_dict's message spans several lines; the CLI wants one.
        detail = " ".join(str(e).split())[:300] or repr(e)
        raise CdpruneError(f"checkpoint {path} does not fit this model/optimizer: {detail}") from None
    return {**header["meta"], **groups["meta"]}
