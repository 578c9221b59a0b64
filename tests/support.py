"""Helpers shared by the CLI tests."""
import contextlib
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.utils.data

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


def recount_energy_mj(model, input_shape, pj_per_mac=4.6, pj_per_byte=160.0) -> float:
    """Energy per inference counted here, independently of cdprune, as docs/design.md "Energy" defines it.

    Every conv and linear call: pj_per_mac × MACs + pj_per_byte × 4 bytes × (its parameters + the values it
    reads + the values it writes), at float32 and batch 1.
    """
    import torch

    total_pj = []

    def count(module, args, output):
        macs = module.weight.numel() * (output.numel() // output.shape[1])  # weights × output positions
        values = sum(p.numel() for p in module.parameters(recurse=False)) + args[0].numel() + output.numel()
        total_pj.append(pj_per_mac * macs + pj_per_byte * 4 * values)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    return sum(total_pj) * 1e-9


def fake_latency_table(model, input_shape, runtime="onnxruntime", threads=1, ms=1e-4):
    """A latency table that claims every layer of `model` takes `ms` at full width (in proportion to the fractions of
    its input and output channels it keeps) and the dense network 10 × `ms` per layer: at the default `ms` a table
    that underestimates any real device, built by hand (no timing)."""
    import torch

    from cdprune import LatencyTable, profile
    from cdprune.complexity import architecture_id
    from cdprune.measure.layer_latency import FRACTIONS

    layers = [layer.name for layer in profile(model, input_shape).layers]
    grids = {name: [[ms * fi * fo for fo in FRACTIONS] for fi in FRACTIONS] for name in layers}
    return LatencyTable(architecture=architecture_id(model), input_shape=tuple(input_shape), runtime=runtime,
                        runtime_version=f"{runtime} (hand-made)", threads=threads, cpu_model="none", machine="none",
                        grids=grids, network_ms=10 * ms * len(layers), layer_sum_ms=ms * len(layers),
                        model=getattr(model, "cdprune_spec", {}).get("name"), torch_version=torch.__version__,
                        source="hand-made table")


class InterruptingDataset(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt (Ctrl-C) at the item fetch after `after` fetches; None: never."""

    def __init__(self, x, y, after: int | None = None):
        self.x, self.y, self.after, self.calls = x, y, after, 0

    def __len__(self):
        return len(self.x)

    def item(self, i):
        return self.x[i], self.y[i]

    def __getitem__(self, i):
        self.calls += 1
        if self.after is not None and self.calls > self.after:
            raise KeyboardInterrupt
        return self.item(i)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """A test module that imports this trains tiny models on one thread: extra threads only add overhead, and they
    stall badly when the machine's cores are shared with other processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quadrants(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1×8×8 noise with one brightened quadrant; the label is the quadrant (4 classes): a task a tiny CNN
    learns in a few dozen steps, for the training-loop tests."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 * torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.5
    return x, y


def tiny_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


QUADRANTS_TRAIN, QUADRANTS_TEST = quadrants(256, 1), torch.utils.data.TensorDataset(*quadrants(64, 2))


def straight_and_resumed(config, tmp_path):
    """tiny_cnn trained on the quadrants straight through, and again with Ctrl-C 40 images into epoch 2, then
    resumed into a model built with another seed: (straight model, its result, resumed model, its result)."""
    from cdprune.train import TrainingInterrupted, train
    straight = tiny_cnn(0)
    expected = train(straight, InterruptingDataset(*QUADRANTS_TRAIN), QUADRANTS_TEST, config, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted):
        train(tiny_cnn(0), InterruptingDataset(*QUADRANTS_TRAIN, after=256 + 40), QUADRANTS_TEST, config,
              tmp_path / "broken")
    resumed = tiny_cnn(7)
    result = train(resumed, InterruptingDataset(*QUADRANTS_TRAIN), QUADRANTS_TEST, config, tmp_path / "broken",
                   resume=True)
    return straight, expected, resumed, result
