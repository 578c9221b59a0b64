"""Helpers shared by the CLI tests."""
import contextlib
import hashlib
from pathlib import Path

import pytest

from cdprune import RunSettings
from cdprune.cli import main

# The smallest training that still exercises every stage, for the CLI and for the API.
TINY_TRAIN = ["--data", "synthetic", "--epochs", "1", "--train-subset", "64", "--test-subset", "32",
              "--batch-size", "32", "--no-progress"]
TINY_SETTINGS = RunSettings("alexnet", "synthetic", epochs=1, train_subset=64, test_subset=32, batch_size=32)


def run_cli(capsys, *argv):
    """Run `cdprune ARGV` in-process; return (exit code, stdout, stderr). argparse's exits count as exit codes."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def tree(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root` with its content hash and mtime: equal trees mean nothing was written."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            state[rel] = ("dir",)
        else:
            state[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return state


@contextlib.contextmanager
def ctrl_c_in_epoch(epoch: int):
    """Within the block, training raises KeyboardInterrupt at the start of epoch `epoch`, as Ctrl-C would."""
    import cdprune.train as train_module

    real_epoch, calls = train_module._train_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "_train_epoch", interrupted)
        yield
