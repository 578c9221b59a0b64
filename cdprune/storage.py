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

Also here: `remove_stale_temps` (temp files left by killed writers),
`lock_directory` (one writing process per directory) and `read_json_object`
(a JSON record read back with one-line errors for damaged files).
"""
from __future__ import annotations

import codecs
import contextlib
import errno
import glob
import hashlib
import inspect
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .errors import CdpruneError

_META_KEY = "cdprune"


# Temp names are ".<target name>.<pid>.<8 hex digits>.tmp"; remove_stale_temps parses them back.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.tmp")
# Bytes of the target's name kept in the temp name, so that the temp name stays within
# NAME_MAX (255 bytes) whenever the target's name does.
_TEMP_NAME_KEEP = 200


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is never seen half-written.

    Failures raise OSError (of the errno's subclass) whose filename is the
    target, or the parent that is in the way, never the temporary file; no
    temporary file is left behind.
    """
    path = Path(path)
    _make_dir(path.parent)
    name = path.name
    while len(os.fsencode(name)) > _TEMP_NAME_KEEP:
        name = name[:-1]
    tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with mode 0o666 lets the umask decide permissions, as a plain
        # open() would (tempfile.mkstemp would force 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        if e.errno is None:
            raise
        raise _about(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # KeyboardInterrupt included: never leave the temp file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise _about(e, path) from e
        raise
    _fsync_dir(path.parent)


def _make_dir(directory: Path) -> None:
    """mkdir -p, with a file in the way reported as such."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        # mkdir(exist_ok=True) reports a file in the way as "File exists", which reads as if
        # nothing were wrong; "Not a directory" says what the problem is.
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory)) from None


def _about(e: OSError, path: Path) -> OSError:
    """`e` again (same errno, so the same subclass), but naming `path`: the temp file's name
    would only puzzle the user, and errors such as ENOSPC from write() name no file at all."""
    return OSError(e.errno, e.strerror or os.strerror(e.errno), str(path))


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


def file_digest(path: str | Path) -> str:
    """"sha256:" and the SHA-256 of a file's bytes: what a run records of the weights it started from."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise CdpruneError(f"cannot read {path} ({e.strerror or e})") from None
    return "sha256:" + digest.hexdigest()


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


# --------------------------------------------------------------------------- stale temp files

def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (signal 0 checks without sending anything)."""
    if pid <= 0:  # kill(0 or negative) would address process groups, not one process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        # PermissionError: it exists but belongs to another user. Anything else (a pid too
        # large for the platform...): unsure, so the caller must keep the process's files.
        return True
    return True


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the temp files that killed `atomic_write_bytes` calls left in `directory`.

    Only regular files named exactly `.<name>.<pid>.<8 hex>.tmp` whose pid is
    not a running process are removed; a live (or unknowable) pid keeps its
    file. Not recursive. A missing `directory` gives []. Returns the removed
    paths, sorted.

    PIDs mean something only on this host, so call it while holding
    `lock_directory(directory)`: then no writer on another host that shares
    the folder can be active in it either.
    """
    directory = Path(directory)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None or _pid_alive(int(match["pid"])):
            continue
        try:
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                continue
            os.unlink(entry.path)
        except FileNotFoundError:  # another cleaner got there first
            continue
        removed.append(directory / entry.name)
    return sorted(removed)



def remove_stale_scratch(prefix: str) -> None:
    """Delete the `scratch_folder`s of this prefix that killed processes left (their pid no longer runs)."""
    pattern = re.compile(re.escape(prefix) + r"(?P<pid>[0-9]+)-.+")
    for entry in Path(tempfile.gettempdir()).glob(f"{glob.escape(prefix)}*"):
        match = pattern.fullmatch(entry.name)
        if match and not _pid_alive(int(match["pid"])) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder `<tmp>/<prefix><pid>-<random>`, deleted afterwards (the pid tells a later
    `remove_stale_scratch` whether its writer still runs); stale ones of the prefix go first."""
    remove_stale_scratch(prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as folder:
        yield Path(folder)

# --------------------------------------------------------------------------- directory lock

LOCK_FILE = ".cdprune.lock"
HOLDER_FILE = ".cdprune.lock.holder"

# Directories this process holds, by real path -> [lock, nesting depth]. Process-wide rather
# than per thread, so nested calls from any thread share the one flock instead of
# deadlocking on it.
_held: dict[str, list] = {}
_held_guard = threading.Lock()
# Locks inherited through fork. They are kept referenced and never released in the child:
# the child shares the parent's open file description, so unlocking it (or letting a
# finalizer do so) would free the parent's lock.
_inherited: list = []


def _forget_held_after_fork() -> None:
    global _held_guard
    _inherited.extend(entry[0] for entry in _held.values())
    _held.clear()
    _held_guard = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_held_after_fork)


def _new_lock(lock_path: Path) -> filelock.BaseFileLock:
    options: dict[str, Any] = {"timeout": 0, "thread_local": False}
    # filelock 4 may fall back to a PID-file lock where flock is missing; such a lock is not
    # released by the kernel when its holder dies, which is the point of this lock.
    if "fallback_to_soft" in inspect.signature(filelock.FileLock.__init__).parameters:
        options["fallback_to_soft"] = False
    return filelock.FileLock(str(lock_path), **options)


def _write_holder(directory: Path) -> None:
    command = " ".join(" ".join(sys.argv).split())[:200] or "python"
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    # The record only names the holder in refusals; the flock decides. A failure to write
    # it (disk full) must not stop the run that already holds the lock.
    with contextlib.suppress(OSError):
        atomic_write_json(directory / HOLDER_FILE, holder)


def _describe_holder(directory: Path) -> str:
    """Who holds the lock, from the holder record, or a phrase saying it is unknown."""
    try:
        holder = json.loads((directory / HOLDER_FILE).read_text(encoding="utf-8"))
        pid, host, command, since = (holder["pid"], str(holder["host"]), str(holder["command"]),
                                     str(holder["since"]))
        pid = int(pid)
    except (OSError, ValueError, TypeError, KeyError):
        return "another process (holder not recorded)"
    if host == socket.gethostname() and not _pid_alive(pid):
        # The record is a dead process's: the new holder has not written its own yet.
        return "another process (holder not recorded yet)"
    return f"pid {pid} on {host} since {since} ({command})"


@contextlib.contextmanager
def lock_directory(path: str | Path, what: str = "run directory") -> Iterator[Path]:
    """Hold an exclusive lock on directory `path` (created if missing) for the `with` body.

    One process at a time may hold it: another process's attempt fails at once
    with a one-line CdpruneError naming the directory and, where recorded, the
    holder's pid, host and command line. The lock is a flock on
    `path/.cdprune.lock`, so the kernel frees it when the holder dies, SIGKILL
    included; there is nothing stale to clean up. Readers are not affected.

    Re-entrant within a process: nested calls for the same directory (from any
    thread) share the lock, which is released when the outermost call exits.
    `what` names the directory in the error (e.g. "run directory", "output
    folder"). OSErrors (the directory cannot be created) propagate unchanged.
    Yields the directory as a Path.
    """
    directory = Path(path).expanduser()
    _make_dir(directory)
    key = os.path.realpath(directory)
    with _held_guard:
        entry = _held.get(key)
        if entry is None:
            lock = _new_lock(Path(key) / LOCK_FILE)
            try:
                lock.acquire()
            except filelock.Timeout:
                raise CdpruneError(f"{what} {directory} is in use by {_describe_holder(Path(key))}", "wait for it "
                                   f"to finish or stop it, or choose another {what}") from None
            try:
                _write_holder(Path(key))
            except BaseException:  # Ctrl-C right here must not leave the lock held but unrecorded
                lock.release()
                raise
            entry = _held[key] = [lock, 0]
        entry[1] += 1
    try:
        yield directory
    finally:
        with _held_guard:
            entry[1] -= 1
            if entry[1] == 0 and _held.get(key) is entry:
                del _held[key]
                # Remove the record while still holding the lock, so it never names a
                # process that no longer holds it.
                with contextlib.suppress(OSError):
                    os.unlink(Path(key) / HOLDER_FILE)
                entry[0].release()


# --------------------------------------------------------------------------- JSON records

class _NonFinite(ValueError):
    """A NaN or infinite number, which strict JSON does not have."""


def _reject_constant(token: str) -> Any:
    raise _NonFinite(token)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise _NonFinite(text)
    return value


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false",
               type(None): "null"}


def read_json_object(path: str | Path, what: str, *,
                     fix: str = "restore it, or delete it and redo the step that wrote it") -> dict[str, Any] | None:
    """The JSON object stored in `path`, or None if there is no file at `path`.

    A missing file is the one case that returns rather than raises, because
    callers treat it differently (an unfinished run, not a damaged one). Every
    other problem raises a one-line CdpruneError "<what> <path> <problem>: <fix>":
    the path is a folder, cannot be read, is empty, is binary or not UTF-8, is
    not valid JSON, holds NaN/Infinity (or a number too large for a float, 1e999), or
    holds JSON that is not an object. `what` names the record (e.g. "metrics
    file"); `fix` tells the user what to do about a damaged one.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CdpruneError(f"{what} {path} is a folder, not a file", fix) from None
    except PermissionError as e:
        raise CdpruneError(f"cannot read {what} {path} ({e.strerror})", "check its permissions") from None
    except OSError as e:  # e.g. a file where a folder of the path should be
        raise CdpruneError(f"cannot read {what} {path} ({e.strerror or e})", fix) from None
    if not raw.strip():
        raise CdpruneError(f"{what} {path} is empty (an interrupted write?)", fix)
    if b"\0" in raw:
        raise CdpruneError(f"{what} {path} is binary, not JSON text", fix)
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0  # some Windows editors add one
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise CdpruneError(f"{what} {path} is not UTF-8 text (byte 0x{raw[bom + e.start]:02x} at offset "
                           f"{bom + e.start})", fix) from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except _NonFinite as e:
        raise CdpruneError(f"{what} {path} holds {e}, which is not a finite number", fix) from None
    except json.JSONDecodeError as e:
        raise CdpruneError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): "
                           f"{fix}") from None
    except ValueError as e:  # e.g. an integer with more digits than int() accepts
        raise CdpruneError(f"{what} {path} is not valid JSON ({' '.join(str(e).split())})", fix) from None
    except RecursionError:
        raise CdpruneError(f"{what} {path} is nested too deeply to read", fix) from None
    if not isinstance(obj, dict):
        raise CdpruneError(f"{what} {path} holds {_JSON_KINDS.get(type(obj), type(obj).__name__)}, "
                           "not a JSON object", fix)
    return obj


def load_json_file(path: str | Path, what: str, *, missing: str, fix: str) -> dict[str, Any]:
    """The JSON object in a file the user names (a plan, a latency table, an energy model).

    Every problem is one CdpruneError: `missing` says what to do when there is no such file, `fix`
    what to do about a damaged one (see read_json_object).
    """
    data = read_json_object(path, what, fix=fix)
    if data is None:
        raise CdpruneError(f"{what} {path} not found: {missing}")
    return data
