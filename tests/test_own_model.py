"""Your own network and your own images: model references, class folders, .npz, and runs made through the API."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import cdprune
from cdprune import data
from imagefolders import class_images, write_classes, write_png
from support import run_cli, tree

NET = str(Path(__file__).parent / "usermodels" / "edgenet.py") + ":EdgeNet"
SMALL = ["--epochs", "1", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Class folders of 28x28 grayscale PNGs, train/ and val/ layout."""
    root = tmp_path_factory.mktemp("images")
    images = class_images(24)
    write_classes(root / "train", images, 0, 18)
    write_classes(root / "val", images, 18, 24)
    return root


@pytest.fixture(scope="module")
def job(folder, tmp_path_factory):
    """`cdprune run` on the user's model and images: dense and FA-0.5, end to end."""
    out = tmp_path_factory.mktemp("job") / "run"
    code = cdprune.cli.main(["run", "--model", NET, "--model-args", '{"width": 0.5}', "--data", str(folder),
                             "--input", "1,28,28", "--out", str(out), *SMALL])
    assert code == 0
    return out


def test_run_trains_the_users_model_on_the_users_folder(job, folder):
    dense = json.loads((job / "dense" / "metrics.json").read_text())
    pruned = json.loads((job / "fa-0.5" / "metrics.json").read_text())
    assert dense["model"] == NET and dense["settings"]["model_args"] == {"width": 0.5}
    assert dense["class_names"] == sorted(["coat", "bag", "ankle_boot"]) and dense["num_classes"] == 3
    assert dense["train_size"] == 3 * 18 and dense["test_size"] == 3 * 6 and dense["input_shape"] == [1, 28, 28]
    assert pruned["reduction"]["flops"] >= 0.5
    plan = cdprune.PruningPlan.load(job / "fa-0.5" / "plan.json")
    assert plan.model == NET and plan.model_kwargs["width"] == 0.5 and plan.architecture == dense["architecture"]


@pytest.mark.parametrize("command", [["eval"], ["export"], ["bench", "--min-time", "0", "--min-repeats", "3"]])
def test_commands_on_a_user_model_run_need_the_reference(job, command, capsys):
    run = job / "fa-0.5"
    before = tree(run)
    code, _, err = run_cli(capsys, command[0], run, *command[1:])
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"--model {NET}" in err, err
    assert tree(run) == before  # refused before anything was imported or written
    code, out, err = run_cli(capsys, command[0], run, *command[1:], "--model", NET)
    assert code == 0, err


def test_eval_reproduces_the_users_run_exactly(job, capsys):
    code, out, err = run_cli(capsys, "eval", job / "fa-0.5", "--model", NET, "--json")
    assert code == 0 and json.loads(out)["matches"], err


def test_another_model_is_refused_naming_both(job, capsys):
    code, _, err = run_cli(capsys, "export", job / "fa-0.5", "--model", NET.replace("EdgeNet", "conv_bn"))
    assert code == 2 and "EdgeNet" in err and len(err.strip().splitlines()) == 1, err


def test_a_run_made_through_the_api_is_a_cli_run(folder, tmp_path, capsys):
    settings = cdprune.RunSettings(model=NET, data=str(folder), input_shape=[1, 28, 28], epochs=1, batch_size=16,
                                   model_args={"width": 0.5})
    net = cdprune.models.create(NET, num_classes=3, in_channels=1, model_args={"width": 0.5})
    plan = cdprune.make_plan(net, (1, 28, 28), "fa", 0.4)
    metrics = cdprune.train_run(tmp_path / "api", settings, plan, progress=False)
    code, out, err = run_cli(capsys, "eval", tmp_path / "api", "--model", NET, "--json")
    assert code == 0 and json.loads(out)["test_acc"] == metrics.test_acc, err
    trained, _ = cdprune.load_run(tmp_path / "api", model=NET)
    assert trained.stem[0].out_channels == len(plan.units[0].kept)


def test_own_dataset_objects_train_export_and_eval_through_the_api(tmp_path, capsys):
    """The README's example: a user's torch Dataset and model object, no files of ours in between."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (48, 1, 16, 16), dtype=np.uint8))
    y = torch.arange(48) % 2
    x[y == 1, :, 4:12, 4:12] = 255  # class 1 has a bright square: learnable in one epoch
    pairs = torch.utils.data.TensorDataset(x, y)
    facts = dict(num_classes=2, input_shape=(1, 16, 16), mean=(0.5,), std=(0.25,), class_names=("plain", "square"))
    train_set = data.from_dataset(pairs, augment="flip", **facts)
    test_set = data.from_dataset(pairs, **facts)
    net = cdprune.models.create(NET, num_classes=2, in_channels=1)
    plan = cdprune.make_plan(net, (1, 16, 16), "pa", 0.3)
    settings = cdprune.RunSettings(model="EdgeNet", data="custom", epochs=1, batch_size=16)
    metrics = cdprune.train_run(tmp_path / "mine", settings, plan, model=net, datasets=(train_set, test_set),
                                progress=False)
    assert metrics.class_names == ["plain", "square"] and metrics.mean == [0.5]
    result = cdprune.eval_run(tmp_path / "mine", model=net, test_set=test_set)
    assert result.matches
    exported = cdprune.export_run(tmp_path / "mine", "onnx", model=net)
    assert Path(exported.path).stat().st_size == exported.bytes > 0
    capsys.readouterr()  # training's warning about its 3 steps per epoch is not the eval's
    code, _, err = run_cli(capsys, "eval", tmp_path / "mine", "--model", NET)
    assert code == 2 and "test_set" in err and len(err.strip().splitlines()) == 1, err


def test_npz_data_runs_from_the_cli(tmp_path, capsys):
    images = class_images(12)
    x = np.concatenate(list(images.values()))[:, None]  # NCHW uint8
    y = np.repeat(np.arange(len(images)), 12)
    np.savez(tmp_path / "set.npz", x_train=x, y_train=y, x_test=x[::3], y_test=y[::3])
    code, out, err = run_cli(capsys, "train", NET, "--data", tmp_path / "set.npz", "--out", tmp_path / "r", *SMALL,
                             "--json")
    assert code == 0, err
    assert json.loads(out)["train_size"] == len(y) and json.loads(out)["input_shape"] == [1, 28, 28]


@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    images = class_images(4)
    write_classes(root / "empty-class" / "train", images)
    write_classes(root / "empty-class" / "val", images)
    (root / "empty-class" / "train" / "nothing").mkdir()
    write_classes(root / "missing-in-val" / "train", images)
    write_classes(root / "missing-in-val" / "val", {k: v for k, v in list(images.items())[:2]})
    write_classes(root / "unreadable", images)
    (root / "unreadable" / "bag" / "broken.png").write_bytes(b"\x89PNG not really")
    write_classes(root / "mixed-sizes", images)
    write_png(root / "mixed-sizes" / "bag" / "big.png", np.zeros((40, 40), dtype=np.uint8))
    return root


@pytest.mark.parametrize("case, message", [("empty-class", "nothing"), ("missing-in-val", "val"),
                                           ("unreadable", "broken.png"), ("mixed-sizes", "--input")])
def test_bad_image_folders_are_one_line_and_write_nothing(bad_folders, case, message, tmp_path, capsys):
    before = tree(bad_folders)
    code, _, err = run_cli(capsys, "train", NET, "--data", bad_folders / case, "--out", tmp_path / "r", *SMALL)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert tree(bad_folders) == before and not (tmp_path / "r").exists()


@pytest.mark.parametrize("reference, args, message", [
    ("no/such/file.py:Net", None, "not found"),
    (NET.replace("EdgeNet", "Missing"), None, "no 'Missing'"),
    ("collections:Counter", None, "not a torch.nn.Module"),
    (NET, "{width: 1}", "not JSON"),
    (NET, "[1]", "not a JSON object"),
    (NET, '{"depth": 3}', "depth"),
])
def test_bad_model_references_are_one_line(reference, args, message, capsys):
    argv = ["profile", reference, "--input", "1,28,28"] + (["--model-args", args] if args else [])
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_profile_and_prune_accept_a_reference(tmp_path, capsys):
    code, out, err = run_cli(capsys, "profile", NET, "--input", "1,28,28", "--json")
    assert code == 0, err
    layers = {layer["name"] for layer in json.loads(out)["layers"]}
    assert {"stem.0", "separable.0.0", "head"} <= layers
    code, out, err = run_cli(capsys, "prune", NET, "--input", "1,28,28", "--out", tmp_path / "p.json", "--json")
    assert code == 0 and json.loads(out)["model"] == NET, err
