"""A user's own model file through every command, and the seams between the commands."""
import json
import os
from pathlib import Path

import pytest

from support import TINY_TRAIN, run_cli, tree

NET = str(Path(__file__).parent / "usermodels" / "edgenet.py") + ":EdgeNet"
HALF = ["--model-args", '{"width": 0.5}']


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """EdgeNet trained dense on synthetic data through the CLI."""
    from cdprune.cli import main

    out = tmp_path_factory.mktemp("journey") / "dense"
    assert main(["train", NET, *HALF, "--out", str(out), *TINY_TRAIN]) == 0
    return out


def test_sweep_and_compare_take_a_model_file(tmp_path, capsys):
    code, out, err = run_cli(capsys, "sweep", "--model", NET, *HALF, "--modes", "fa", "--targets", "0.5",
                             "--bench-time", "0.05", "--out", tmp_path / "sweep", *TINY_TRAIN, "--json")
    assert code == 0, err
    points = json.loads(out)["points"]
    assert [p["status"] for p in points] == ["ok", "ok"] and all(p["latency_ms"] > 0 for p in points)
    code, out, err = run_cli(capsys, "compare", "--model", NET, *HALF, "--methods", "dense,fa,l1", "--out",
                             tmp_path / "compare", *TINY_TRAIN, "--json")
    assert code == 0, err
    assert [s["method"] for s in json.loads(out)["summaries"]] == ["dense", "fa", "l1"]


@pytest.mark.parametrize("argv", [
    ["profile", NET, *HALF, "--input", "1,28,28"],
    ["prune", NET, *HALF, "--input", "1,28,28", "--out", "{tmp}/plan.json"],
    ["latency-table", NET, *HALF, "--input", "1,16,16", "--runtime", "torch", "--threads", "1", "--repeats", "1",
     "--min-time", "0", "--no-progress", "--out", "{tmp}/table.json"],
    ["bench", NET, *HALF, "--min-time", "0", "--min-repeats", "3"],
    ["eval", "{run}", "--model", NET],
    ["export", "{run}", "--model", NET, "--out", "{tmp}/model.onnx"],
    ["bench", "{run}", "--model", NET, "--min-time", "0", "--min-repeats", "3"],
])
def test_every_command_takes_a_model_file(user_run, argv, tmp_path, capsys):
    code, _, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)).replace("{run}", str(user_run)) for a in argv])
    assert code == 0, err


def test_the_printed_prune_command_runs_as_printed(tmp_path, capsys, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "latency-table", NET, *HALF, "--input", "1,16,16", "--num-classes", "4",
                             "--runtime", "torch", "--threads", "1", "--repeats", "1", "--min-time", "0",
                             "--no-progress", "--out", tmp_path / "my table.json")
    assert code == 0, err
    table = json.loads((tmp_path / "my table.json").read_text())  # timings without noise: a plan to count on
    table["grids"] = {name: [[(i + 1) * (o + 1) / 16 for o in range(4)] for i in range(4)] for name in table["grids"]}
    table["network_ms"] = table["layer_sum_ms"] = sum(grid[-1][-1] for grid in table["grids"].values())
    (tmp_path / "my table.json").write_text(json.dumps(table))
    printed = out.strip().splitlines()[-1].split("plan with it anywhere, ", 1)[1]
    argv = shlex.split(printed)
    assert argv[:2] == ["cdprune", "prune"]
    code, out, err = run_cli(capsys, *argv[1:], "--target", "0.3")
    assert code == 0, err
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["mode"] == "la" and plan["input_shape"] == [1, 16, 16]


def test_a_factory_that_forwards_kwargs_gets_only_what_the_user_gives(capsys):
    factory = str(Path(__file__).parent / "usermodels" / "forwarding.py") + ":create_model"
    code, out, err = run_cli(capsys, "profile", factory, "--model-args", '{"model_name": "tinynet", "in_chans": 1}',
                             "--input", "1,8,8", "--json")
    assert code == 0, err
    layers = {layer["name"]: layer for layer in json.loads(out)["layers"]}
    assert layers["head"]["params"] == 8 * 1000 + 1000  # timm's own default width: nothing was slipped in
    assert layers["conv.0"]["params"] == 8 * 1 * 9 + 8


@pytest.mark.parametrize("command", [["sweep", "--modes", "fa", "--targets", "0.5"], ["compare", "--methods", "dense"],
                                     ["run"]])
def test_ctrl_c_names_the_way_to_continue_that_the_command_takes(command, tmp_path, capsys):
    from support import ctrl_c_in_epoch

    argv = [command[0], "--model", "alexnet", *command[1:], "--out", tmp_path / "out", *TINY_TRAIN, "--epochs", "2"]
    with ctrl_c_in_epoch(2):
        code, _, err = run_cli(capsys, *argv)
    assert code == 130 and "--resume" not in err and "run the same command again" in err, err
    code, _, err = run_cli(capsys, *argv, "--bench-time", "0.05") if command[0] == "sweep" else run_cli(capsys, *argv)
    assert code == 0, err


def test_a_subset_larger_than_the_split_is_noted(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "alexnet", "--out", tmp_path / "run", *TINY_TRAIN, "--train-subset",
                           "100000")
    assert code == 0, err
    assert "train_subset (--train-subset) 100000 is more than the 512 images" in err, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train_size"] == 512


def test_bench_counts_one_thread_in_the_singular(capsys):
    code, out, err = run_cli(capsys, "bench", "alexnet", "--threads", "1", "--min-time", "0", "--min-repeats", "3")
    assert code == 0, err
    assert "1 thread" in out and "1 threads" not in out, out


@pytest.fixture(scope="module")
def four_classes(tmp_path_factory):
    """A folder of four classes of 28×28 grayscale PNGs, split here."""
    from imagefolders import class_images, write_classes

    images = class_images(8)
    images["shirt"] = images["coat"][::-1].copy()
    root = tmp_path_factory.mktemp("four")
    write_classes(root, images)
    return root


def test_prune_reads_classes_and_shape_from_the_data(four_classes, tmp_path, capsys):
    data = ["--data", four_classes]
    code, _, err = run_cli(capsys, "prune", NET, *HALF, "--out", tmp_path / "default.json")
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", NET, *HALF, "--plan", tmp_path / "default.json", "--out", tmp_path / "r0",
                           *TINY_TRAIN, *data)
    assert code == 2 and "--input 1,28,28" in err, err  # the first field that differs, with its flag
    code, _, err = run_cli(capsys, "prune", NET, *HALF, "--input", "1,28,28", "--out", tmp_path / "shape.json")
    code, _, err = run_cli(capsys, "train", NET, *HALF, "--plan", tmp_path / "shape.json", "--out", tmp_path / "r1",
                           *TINY_TRAIN, *data)
    assert code == 2 and "num_classes=10, this model has num_classes=4" in err and "--num-classes" in err, err
    code, _, err = run_cli(capsys, "prune", NET, *HALF, *data, "--out", tmp_path / "plan.json")
    assert code == 0, err
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["input_shape"] == [1, 28, 28] and plan["model_kwargs"]["num_classes"] == 4
    code, _, err = run_cli(capsys, "train", NET, *HALF, "--plan", tmp_path / "plan.json", "--out", tmp_path / "r2",
                           *TINY_TRAIN, *data)
    assert code == 0, err
    code, _, err = run_cli(capsys, "prune", NET, *data, "--num-classes", "10", "--out", tmp_path / "no.json")
    assert code == 2 and "contradicts the 4 classes" in err and not (tmp_path / "no.json").exists(), err


def test_export_removes_what_a_killed_export_left(pruned_run, tmp_path, capsys, monkeypatch):
    import shutil
    import subprocess
    import sys
    import tempfile

    run = tmp_path / "run"
    shutil.copytree(pruned_run, run)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_file = run / f".model.onnx.{dead.pid}.0123abcd.tmp"
    stale_file.write_bytes(b"half a model")
    stale_folder = tmp_path / "tmp" / f"cdprune-export-{dead.pid}-x1y2"
    stale_folder.mkdir()
    (stale_folder / "fp32.onnx").write_bytes(b"half a model")
    live_folder = tmp_path / "tmp" / f"cdprune-export-{os.getpid()}-a1b2"  # a running export's: kept
    live_folder.mkdir()
    code, _, err = run_cli(capsys, "export", run)
    assert code == 0, err
    assert not stale_file.exists() and not stale_folder.exists() and live_folder.exists()
    assert (run / "model.onnx").exists()


@pytest.mark.parametrize("command", ["train", "compare", "sweep", "run"])
def test_every_training_command_states_the_defaults_it_uses(command, capsys):
    from cdprune import DEFAULT_JOB, RunSettings
    from cdprune.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    defaults = {a.dest: (a.default, a.help) for a in sub._actions}
    expected = DEFAULT_JOB if command == "run" else {}
    base = RunSettings("m", "d")
    for name in ("epochs", "batch_size", "train_subset", "test_subset", "seed"):
        value = expected.get(name, getattr(base, name))
        assert defaults[name][0] == value
        assert f"default {value if value is not None else 'all'}" in defaults[name][1], (name, defaults[name][1])
    lr = expected.get("lr", base.lr)
    assert f"default {lr:g} for classify" in defaults["lr"][1]


def test_a_model_file_with_another_forward_is_refused_or_loudly_allowed(tmp_path, capsys):
    source = (Path(__file__).parent / "usermodels" / "edgenet.py").read_text()
    (tmp_path / "net.py").write_text(source)
    net = f"{tmp_path / 'net.py'}:EdgeNet"
    code, _, err = run_cli(capsys, "train", net, *HALF, "--out", tmp_path / "run", *TINY_TRAIN)
    assert code == 0, err
    # Same layers, same names and shapes; the residual add is gone from forward.
    (tmp_path / "net.py").write_text(source.replace("x = (x + self.res(x)).relu()", "x = self.res(x).relu()"))
    import sys
    sys.modules.pop(next(k for k, m in list(sys.modules.items())
                         if getattr(m, "__file__", None) == str(tmp_path / "net.py")), None)
    before = tree(tmp_path / "run")
    for command in (["eval"], ["export", "--out", tmp_path / "m.onnx"], ["bench", "--min-time", "0",
                                                                        "--min-repeats", "3"]):
        code, _, err = run_cli(capsys, command[0], tmp_path / "run", "--model", net, *command[1:])
        assert code == 2 and "source of model" in err and "--allow-changed-source" in err, err
    assert tree(tmp_path / "run") == before and not (tmp_path / "m.onnx").exists()
    code, out, err = run_cli(capsys, "eval", tmp_path / "run", "--model", net, "--allow-changed-source")
    assert code == 0 and "WARNING" in err, err
    # Allowed through, the export is written and checked, and its check fails: exit 3, said in one line.
    code, out, err = run_cli(capsys, "export", tmp_path / "run", "--model", net, "--allow-changed-source",
                             "--out", tmp_path / "m.onnx")
    errors = [line for line in err.splitlines() if line.startswith("cdprune: error:")]
    assert code == 3 and len(errors) == 1 and "does not compute what the run's model computes" in errors[0], err
    kept = json.loads((tmp_path / "run" / "exports.json").read_text())[str((tmp_path / "m.onnx").resolve())]
    assert kept["check"]["reproduces_run"] is False


def test_an_fp32_export_reproduces_its_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "alexnet", "--out", tmp_path / "run", *TINY_TRAIN)
    assert code == 0, err
    code, out, err = run_cli(capsys, "export", tmp_path / "run", "--json")
    check = json.loads(out)["check"]
    assert code == 0 and check["reproduces_run"] is True, err
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["test_loss"]
    assert abs(check["test_loss"] - recorded) <= 1e-4 * recorded


def test_a_small_network_lands_near_its_target_and_says_how_far(tmp_path, capsys):
    net = str(Path(__file__).parent / "usermodels" / "smallgroups.py") + ":SmallGroups"
    for target, round_to, most in [(0.1, 8, 0.16), (0.1, 1, 0.14), (0.5, 1, 0.54)]:
        code, out, err = run_cli(capsys, "prune", net, "--target", target, "--round-to", round_to, "--out",
                                 tmp_path / "plan.json", "--json")
        assert code == 0, err
        # One whole draw took 34.8 % of the FLOPs for any target up to 0.3 before the last step was chosen.
        assert target <= json.loads(out)["reduction"]["flops"] <= most
    code, out, err = run_cli(capsys, "prune", net, "--target", "0.1", "--out", tmp_path / "plan.json")
    assert code == 0 and "the plan removes 15.2% of the flops for a target of 10%, 5.2 points beyond it" in out, out


def test_the_main_jobs_width_applies_only_when_the_model_is_left_out(tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--out", tmp_path / "job", *TINY_TRAIN, "--json")
    assert code == 0, err
    dense = json.loads(out)["runs"][0]
    assert dense["settings"]["model_args"] == {"width": 0.5}
    assert dense["params"] == vgg16_params(width=0.5)
    # Naming the model, even the same one, builds it as registered: the paper's full-width VGG-16.
    code, out, err = run_cli(capsys, "run", "--model", "vgg16", "--out", tmp_path / "named", *TINY_TRAIN, "--json")
    assert code == 0, err
    dense = json.loads(out)["runs"][0]
    assert dense["settings"]["model_args"] == {} and dense["params"] == vgg16_params(width=1.0)


def vgg16_params(width: float) -> int:
    """VGG-16's parameters by hand: 3×3 convs without bias from 3 input channels, BN's weight and bias, a
    10-way linear classifier."""
    convs = [round(c * width) for c in (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)]
    weights = sum(c_in * c_out * 9 for c_in, c_out in zip([3, *convs[:-1]], convs))
    return weights + 2 * sum(convs) + convs[-1] * 10 + 10
