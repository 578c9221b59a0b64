"""Tests for cdprune.storage's reliability helpers: failed atomic writes, stale temp files,
the per-directory writer lock and damaged JSON records."""
from __future__ import annotations

import errno
import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cdprune import storage
from cdprune.errors import CdpruneError

PACKAGE_DIR = Path(storage.__file__).resolve().parent


def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- failed atomic writes

def test_atomic_write_under_a_regular_file_names_the_file_in_the_way(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    with pytest.raises(NotADirectoryError) as err:
        storage.atomic_write_bytes(blocker / "metrics.json", b"{}")
    assert err.value.filename == str(blocker)
    with pytest.raises(NotADirectoryError):
        storage.atomic_write_bytes(blocker / "deeper" / "metrics.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert blocker.read_text() == "keep me"


# Root ignores chmod, but not these: procfs and sysfs refuse new regular files to everyone.
@pytest.mark.parametrize("target", ["/proc/self/cdprune-test.json", "/sys/cdprune-test.json"])
def test_atomic_write_to_an_unwritable_folder_names_the_target(target):
    with pytest.raises(OSError) as err:
        storage.atomic_write_bytes(target, b"{}")
    # The message names the file the user asked for, not the hidden temp file.
    assert err.value.filename == target and err.value.errno is not None
    assert not any(name.startswith(".cdprune-test.json.") for name in os.listdir(Path(target).parent))


def test_atomic_write_over_a_folder_removes_its_temp_file(tmp_path):
    target = tmp_path / "model.safetensors"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError) as err:
        storage.atomic_write_bytes(target, b"weights")
    assert err.value.filename == str(target)
    assert _temp_files(tmp_path) == [] and (target / "inside").is_dir()


def test_atomic_write_error_without_a_file_name_gets_the_target(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write()/fsync() report it

    monkeypatch.setattr(storage.os, "fsync", disk_full)
    with pytest.raises(OSError) as err:
        storage.atomic_write_bytes(tmp_path / "ckpt.safetensors", b"x" * 100)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "ckpt.safetensors")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- stale temp files

def _real_temp_name(folder: Path, monkeypatch) -> str:
    """The name atomic_write_bytes gives its temp file for folder/metrics.json."""
    seen = []

    def fail_replace(src, dst):
        seen.append(Path(src).name)
        raise OSError(errno.EIO, "stop here")

    with monkeypatch.context() as m:
        m.setattr(storage.os, "replace", fail_replace)
        with pytest.raises(OSError):
            storage.atomic_write_bytes(folder / "metrics.json", b"{}")
    return seen[0]


def test_remove_stale_temps_removes_only_dead_writers_files(tmp_path, monkeypatch):
    live_name = _real_temp_name(tmp_path, monkeypatch)
    assert live_name.startswith(f".metrics.json.{os.getpid()}.")
    dead = _dead_pid()
    dead_name = live_name.replace(f".{os.getpid()}.", f".{dead}.")
    names = {
        live_name: "this process is alive",
        dead_name: "killed writer",
        f".model.safetensors.{dead}.0a1b2c3d.tmp": "killed writer",
        f"model.safetensors.{dead}.0a1b2c3d.tmp": "no leading dot",
        f".model.safetensors.{dead}.0A1B2C3D.tmp": "upper-case hex",
        f".model.safetensors.{dead}.0a1b2c.tmp": "short token",
        f".model.safetensors.{dead}.0a1b2c3d.tmp.bak": "suffix after .tmp",
        f".{dead}.0a1b2c3d.tmp": "no target name",
        ".model.safetensors.0.0a1b2c3d.tmp": "pid 0 is no process",
    }
    for name, why in names.items():
        (tmp_path / name).write_text(why)
    (tmp_path / f".folder.{dead}.0a1b2c3d.tmp").mkdir()  # not a regular file

    removed = storage.remove_stale_temps(tmp_path)

    gone = sorted([dead_name, f".model.safetensors.{dead}.0a1b2c3d.tmp"])
    assert removed == [tmp_path / name for name in gone]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(set(names) - set(gone) | {f".folder.{dead}.0a1b2c3d.tmp"})
    assert storage.remove_stale_temps(tmp_path) == []
    assert storage.remove_stale_temps(tmp_path / "missing") == []


# --------------------------------------------------------------------------- directory lock

# A second process driven over stdin: "hold" takes the lock and keeps it, "try" takes and
# drops it; each answers one line. It loads only cdprune.storage and cdprune.errors (an empty
# stand-in for the package skips cdprune/__init__), so it starts faster and does not
# depend on the rest of the package.
_LOCKER = """
import sys, types
package = types.ModuleType("cdprune")
package.__path__ = [sys.argv[2]]
sys.modules["cdprune"] = package
from cdprune.errors import CdpruneError
from cdprune.storage import lock_directory
kept = []
for line in sys.stdin:
    try:
        lock = lock_directory(sys.argv[1])
        lock.__enter__()
    except CdpruneError as e:
        print("refused", e, flush=True)
        continue
    if line.strip() == "hold":
        kept.append(lock)
        print("held", flush=True)
    else:
        lock.__exit__(None, None, None)
        print("got it", flush=True)
"""


class _Locker:
    def __init__(self, directory: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", _LOCKER, str(directory), str(PACKAGE_DIR)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        assert ready, f"no answer to {command!r}"
        answer = self.proc.stdout.readline()
        assert answer, f"the locking process died (exit code {self.proc.wait()})"
        return answer.strip()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no cleanup code runs in the holder
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def locker():
    lockers = []

    def start(directory: Path) -> _Locker:
        lockers.append(_Locker(directory))
        return lockers[-1]

    yield start
    for one in lockers:
        if one.proc.poll() is None:
            one.kill()


def test_lock_refuses_a_second_process_and_frees_when_the_holder_is_killed(tmp_path, locker):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"top1": 0.5}')
    holder = locker(run)
    assert holder.ask("hold") == "held"

    with pytest.raises(CdpruneError) as err:
        with storage.lock_directory(run):
            pass
    message = str(err.value)
    assert f"run directory {run} is in use by pid {holder.proc.pid} " in message and "\n" not in message
    with pytest.raises(CdpruneError, match="output folder .* choose another output folder"):
        with storage.lock_directory(run, what="output folder"):
            pass

    # The lock keeps out writers that ask for it, not readers.
    assert storage.read_json_object(run / "metrics.json", "metrics file") == {"top1": 0.5}
    assert "metrics.json" in os.listdir(run)

    holder.kill()
    with storage.lock_directory(run) as locked:
        assert locked == run
        record = json.loads((run / storage.HOLDER_FILE).read_text())
        assert record["pid"] == os.getpid()
    assert not (run / storage.HOLDER_FILE).exists()


def test_lock_is_reentrant_and_released_by_the_outermost_exit(tmp_path, locker):
    run = tmp_path / "run"
    other = locker(run)
    with storage.lock_directory(run):  # creates the directory
        with storage.lock_directory(run):
            assert other.ask("try").startswith(f"refused run directory {run} is in use by pid {os.getpid()} ")

            # Another thread of this process shares the hold instead of deadlocking on it.
            def nested():
                with storage.lock_directory(run):
                    entered.set()

            entered = threading.Event()
            worker = threading.Thread(target=nested)
            worker.start()
            worker.join(timeout=30)
            assert entered.is_set()
        assert other.ask("try").startswith("refused")
    assert other.ask("try") == "got it"


def test_lock_on_a_file_is_an_os_error(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(NotADirectoryError):
        with storage.lock_directory(tmp_path / "run"):
            pass


# --------------------------------------------------------------------------- JSON records

def test_read_json_object_returns_the_object_or_none_when_missing(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"model": "vgg16", "top1": 0.91, "tags": [1, 2]}')
    assert storage.read_json_object(path, "run record") == {"model": "vgg16", "top1": 0.91, "tags": [1, 2]}
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')  # a BOM from a Windows editor is harmless
    assert storage.read_json_object(path, "run record") == {"a": 1}
    assert storage.read_json_object(tmp_path / "absent.json", "run record") is None
    assert storage.read_json_object(tmp_path / "no-dir" / "absent.json", "run record") is None


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"),
    (b"  \n", "is empty"),
    (b"\x00\x01safetensors\x00", "is binary, not JSON text"),
    (b'{"name": "caf\xe9"}', "is not UTF-8 text (byte 0xe9 at offset 13)"),
    (b'{"top1": 0.5,', "is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 14)"),
    (b'{"top1": 0.5} trailing', "is not valid JSON (Extra data at line 1 column 15)"),
    (b'\xef\xbb\xbf{"name": "caf\xe9"}', "is not UTF-8 text (byte 0xe9 at offset 16)"),
    (b'{"top1": NaN}', "holds NaN, which is not a finite number"),
    (b'{"loss": Infinity}', "holds Infinity, which is not a finite number"),
    (b'{"loss": -Infinity}', "holds -Infinity, which is not a finite number"),
    (b'{"loss": 1e999}', "holds 1e999, which is not a finite number"),
    (b'[{"top1": 0.5}]', "holds an array, not a JSON object"),
    (b"42", "holds a number, not a JSON object"),
    (b'"metrics"', "holds a string, not a JSON object"),
    (b"null", "holds null, not a JSON object"),
])
def test_read_json_object_names_the_damage(tmp_path, content, problem):
    path = tmp_path / "metrics.json"
    path.write_bytes(content)
    with pytest.raises(CdpruneError) as err:
        storage.read_json_object(path, "metrics file", fix="re-run the training")
    message = str(err.value)
    assert message.startswith(f"metrics file {path} {problem}") and message.endswith(": re-run the training")
    assert "\n" not in message


def test_read_json_object_on_a_folder_or_under_a_file(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(CdpruneError) as err:
        storage.read_json_object(tmp_path / "metrics.json", "metrics file")
    assert str(err.value).startswith(f"metrics file {tmp_path / 'metrics.json'} is a folder, not a file: ")
    assert "\n" not in str(err.value)
    (tmp_path / "run").write_text("a file, not a run folder")
    with pytest.raises(CdpruneError, match="^cannot read run record .*run/run.json \\(Not a directory\\): "):
        storage.read_json_object(tmp_path / "run" / "run.json", "run record")
