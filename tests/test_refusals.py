"""What the tool refuses: every bad input below exits 2 with one line on stderr and writes nothing.

The table is the documentation of the refusals; each row names the command, a piece of the
message the user must see, and (implicitly) that the whole file tree is unchanged afterwards.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import cdprune
from cdprune import models
from cdprune.cli import main
from cdprune.storage import save_weights
from imagefolders import class_images, write_classes
from support import TINY_TRAIN, ctrl_c_in_epoch, fake_latency_table, run_cli, tree


def _retype_kept(kind):
    def edit(plan):
        unit = next(u for u in plan["units"] if 1 in u["kept"])
        unit["kept"][unit["kept"].index(1)] = kind(1)
    return edit


# Plans edited by hand, each with its digest recomputed: only their content can give them away.
PLAN_EDITS = {"string-index": _retype_kept(str), "float-index": _retype_kept(float), "bool-index": _retype_kept(bool),
              "relabelled": lambda plan: plan.update(model="vgg16"),
              "num-classes": lambda plan: plan["model_kwargs"].update(num_classes=4)}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder of finished, interrupted and damaged runs, plans and obstacles, shared by every case."""
    root = tmp_path_factory.mktemp("refusals")
    cdprune.make_plan(models.create("alexnet"), (3, 32, 32), "fa", 0.5).save(root / "plan.json")
    assert main(["train", "alexnet", "--out", str(root / "dense"), *TINY_TRAIN]) == 0
    with ctrl_c_in_epoch(2):
        assert main(["train", "alexnet", "--out", str(root / "interrupted"), *TINY_TRAIN, "--epochs", "2"]) == 130
    assert (root / "interrupted" / "checkpoint.safetensors").exists()

    damaged = {"metrics-list": ("metrics.json", b"[1, 2]"), "metrics-binary": ("metrics.json", b"\x00\xff\x00"),
               "metrics-types": ("metrics.json", None), "metrics-nan": ("metrics.json", b'{"test_acc": NaN}')}
    for name, (file, content) in damaged.items():
        shutil.copytree(root / "dense", root / name)
        if content is None:  # valid JSON, wrong types
            data = json.loads((root / name / file).read_text())
            data["test_acc"], data["params"] = "high", [1]
            content = json.dumps(data).encode()
        (root / name / file).write_bytes(content)
    shutil.copytree(root / "dense", root / "metrics-dir")
    (root / "metrics-dir" / "metrics.json").unlink()
    (root / "metrics-dir" / "metrics.json").mkdir()
    shutil.copytree(root / "interrupted", root / "settings-list")
    (root / "settings-list" / "run.json").write_text("[]")
    shutil.copytree(root / "interrupted", root / "corrupt")
    (root / "corrupt" / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    one_class = class_images(6)["coat"]
    write_classes(root / "one-class", {"coat": one_class})
    write_classes(root / "one-class-two", {"coat": one_class, "bag": class_images(6)["bag"]})
    np.savez(root / "one-class.npz", x_train=one_class, y_train=np.zeros(6, np.int64), x_test=one_class[:2],
             y_test=np.zeros(2, np.int64))
    for name, edit in PLAN_EDITS.items():
        body = json.loads((root / "plan.json").read_text())
        edit(body)
        body.pop("digest")
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        body["digest"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()  # an edit that hides itself
        (root / f"plan-{name}.json").write_text(json.dumps(body))
    (root / "huge-energy.json").write_text(json.dumps({"pj_per_mac": 1e308, "pj_per_byte": 1e308}))
    (root / "afile").write_text("x")
    (root / "empty").mkdir()
    fake_latency_table(models.create("alexnet"), (3, 32, 32), runtime="torch").save(root / "table-torch.json")
    assert main(["train", "alexnet", "--plan", str(root / "plan.json"), "--out", str(root / "pruned"), *TINY_TRAIN]) == 0
    assert main(["export", str(root / "pruned"), "--out", str(root / "pruned.onnx"), "--no-check"]) == 0
    fake_latency_table(models.create("vgg16"), (3, 32, 32), runtime="onnxruntime").save(root / "table-vgg16.json")
    save_weights(root / "alexnet-4-classes.safetensors", models.create("alexnet", num_classes=4).state_dict())
    return root


NEW = "new-run"  # a run directory that must not come into being
USERMODELS = os.path.join(os.path.dirname(__file__), "usermodels")
CASES = [
    # (id, argv, piece of the one-line message)
    ("resume-dense-with-plan", ["train", "alexnet", "--resume", "--plan", "{root}/plan.json", "--out",
                                "{root}/interrupted", *TINY_TRAIN, "--epochs", "2"], "was started as dense"),
    ("reuse-dense-with-plan", ["train", "alexnet", "--resume", "--plan", "{root}/plan.json", "--out", "{root}/dense",
                               *TINY_TRAIN], "was started as dense"),
    ("resume-other-workers", ["train", "alexnet", "--resume", "--out", "{root}/interrupted", *TINY_TRAIN,
                              "--epochs", "2", "--workers", "1"], "other settings"),
    ("resume-other-epochs", ["train", "alexnet", "--resume", "--out", "{root}/interrupted", *TINY_TRAIN,
                             "--epochs", "3"], "epochs=2, now 3"),
    ("resume-other-workers-both", ["train", "alexnet", "--resume", "--out", "{root}/interrupted", *TINY_TRAIN,
                                   "--epochs", "2", "--workers", "1"], "num_workers=0, now 1"),
    ("resume-corrupt-checkpoint", ["train", "alexnet", "--resume", "--out", "{root}/corrupt", *TINY_TRAIN,
                                   "--epochs", "2"], "delete"),
    ("restart-interrupted", ["train", "alexnet", "--out", "{root}/interrupted", *TINY_TRAIN, "--epochs", "2"],
     "--resume"),
    ("damaged-run-json", ["train", "alexnet", "--resume", "--out", "{root}/settings-list", *TINY_TRAIN,
                          "--epochs", "2"], "run settings file"),
    ("epochs-0", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--epochs", "0"], "epochs"),
    ("lr-0", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--lr", "0"], "learning rate"),
    ("lr-nan", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--lr", "nan"], "finite number"),
    ("lr-inf", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--lr", "inf"], "finite number"),
    ("batch-0", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--batch-size", "0"], "batch_size"),
    ("workers-negative", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--workers", "-1"],
     "num_workers"),
    ("device-cuda", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--device", "cuda"],
     "CUDA is not available"),
    ("device-unknown", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--device", "tpu"],
     "unknown device"),
    ("empty-data-dir", ["train", "alexnet", "--out", f"{{root}}/{NEW}", "--data", "fashion-mnist", "--data-dir",
                        "{root}/empty", "--epochs", "1", "--no-progress"], "data_dir"),
    ("out-is-a-file", ["train", "alexnet", "--out", "{root}/afile", *TINY_TRAIN], "is a file"),
    ("out-under-a-file", ["train", "alexnet", "--out", "{root}/afile/run", *TINY_TRAIN], "afile"),
    ("out-under-proc", ["train", "alexnet", "--out", "/proc/cdprune-run", *TINY_TRAIN], "/proc/cdprune-run"),
    ("main-job-lr-0", ["run", "--model", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--lr", "0"],
     "learning rate"),
    ("main-job-samples-of-classify", ["run", "--model", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN,
                                      "--samples", "2"], "this job trains task classify, whose outputs are not images"),
    ("main-job-target", ["run", "--model", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--target", "1.5"],
     "target"),
    ("sweep-target-above-1", ["sweep", "--model", "alexnet", "--targets", "0.5,1.5", "--out", f"{{root}}/{NEW}",
                              *TINY_TRAIN], "target 1.5"),
    ("sweep-target-nan", ["sweep", "--model", "alexnet", "--targets", "nan", "--out", f"{{root}}/{NEW}",
                          *TINY_TRAIN], "target nan"),
    ("compare-target", ["compare", "--model", "alexnet", "--methods", "dense,fa", "--target", "1.5", "--out",
                        f"{{root}}/{NEW}", *TINY_TRAIN], "target"),
    ("compare-dense-target", ["compare", "--model", "alexnet", "--methods", "dense", "--target", "2", "--out",
                              f"{{root}}/{NEW}", *TINY_TRAIN], "target 2"),
    ("compare-seeds-0", ["compare", "--model", "alexnet", "--methods", "dense,fa", "--seeds", "0", "--out",
                         f"{{root}}/{NEW}", *TINY_TRAIN], "seeds"),
    ("prune-target-without-mode", ["prune", "vgg16", "--budget", "flops=100M", "--target", "0.5", "--out",
                                   "{root}/new-plan.json"], "mode"),
    ("prune-budget-overflow", ["prune", "vgg16", "--budget", "flops=1e400", "--out", "{root}/new-plan.json"],
     "flops"),
    ("prune-budget-megajoules", ["prune", "vgg16", "--budget", "energy=5MJ", "--out", "{root}/new-plan.json"],
     "write 5mJ"),
    ("prune-budget-megaseconds", ["prune", "vgg16", "--budget", "latency=5Ms", "--out", "{root}/new-plan.json"],
     "M means mega"),
    ("prune-budget-nan", ["prune", "vgg16", "--budget", "flops=nan", "--out", "{root}/new-plan.json"], "flops"),
    ("prune-target-nan", ["prune", "vgg16", "--target", "nan", "--out", "{root}/new-plan.json"], "finite number"),
    ("eval-metrics-list", ["eval", "{root}/metrics-list"], "metrics file"),
    ("eval-metrics-binary", ["eval", "{root}/metrics-binary"], "metrics file"),
    ("eval-metrics-folder", ["eval", "{root}/metrics-dir"], "metrics file"),
    ("eval-metrics-types", ["eval", "{root}/metrics-types"], "test_acc"),
    ("eval-metrics-nan", ["eval", "{root}/metrics-nan"], "metrics file"),
    ("eval-samples-of-a-classifier", ["eval", "{root}/dense", "--samples", "2"], "whose outputs are not images"),
    ("eval-samples-zero", ["eval", "{root}/dense", "--samples", "0"], "whole number of at least 1"),
    ("eval-samples-dir-alone", ["eval", "{root}/dense", "--samples-dir", f"{{root}}/{NEW}"], "add --samples N"),
    ("bench-metrics-list", ["bench", "{root}/metrics-list"], "metrics file"),
    ("export-metrics-list", ["export", "{root}/metrics-list"], "metrics file"),
    ("export-out-under-a-file", ["export", "{root}/dense", "--out", "{root}/afile/model.onnx"], "afile"),
    ("export-over-the-weights", ["export", "{root}/dense", "--out", "{root}/dense/model.safetensors"],
     "file of the run"),
    ("export-over-the-metrics", ["export", "{root}/dense", "--format", "torchscript", "--out",
                                 "{root}/interrupted/metrics.json"], "file of the run"),
    ("export-over-the-checkpoint", ["export", "{root}/dense", "--out", "{root}/interrupted/checkpoint.safetensors"],
     "file of the run"),
    *[(f"plan-{name}", ["train", "alexnet", "--plan", f"{{root}}/plan-{name}.json", "--out", f"{{root}}/{NEW}",
                         *TINY_TRAIN], message)
      for name, message in [("string-index", "'1' is not an integer"), ("float-index", "1.0 is not an integer"),
                            ("bool-index", "True is not an integer"), ("relabelled", "made for vgg16, not alexnet"),
                            ("num-classes", "num_classes=4, this model has num_classes=10")]],
    ("profile-energy-overflow", ["profile", "alexnet", "--energy-model", "{root}/huge-energy.json"],
     "beyond the range of a number"),
    ("prune-energy-overflow", ["prune", "alexnet", "--energy-model", "{root}/huge-energy.json", "--out",
                               "{root}/new-plan.json"], "not a finite number"),
    ("sr-images-below-the-scale", ["train", "dncnn", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--data",
                                   "{root}/one-class", "--input", "1,3,3", "--task", "sr", "--scale", "4"],
     "smaller than the ×4"),
    ("one-class-folder", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--data", "{root}/one-class"],
     "at least two"),
    ("one-class-npz", ["run", "--model", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--data",
                       "{root}/one-class.npz"], "at least two"),
    ("val-fraction-registered", ["train", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN, "--val-fraction",
                                 "0.3"], "val_fraction (--val-fraction) 0.3 would be ignored"),
    ("val-fraction-registered-sweep", ["sweep", "--model", "alexnet", "--out", f"{{root}}/{NEW}", *TINY_TRAIN,
                                       "--val-fraction", "0.5"], "would be ignored"),
    # Budgets in run, compare and sweep: refused before anything is trained or written.
    ("run-budget-malformed", ["run", "--model", "alexnet", "--budget", "flops=lots", "--out", f"{{root}}/{NEW}",
                              *TINY_TRAIN], "bad budget (--budget) 'flops=lots'"),
    ("run-budget-unknown-metric", ["run", "--model", "alexnet", "--budget", "speed=3", "--out", f"{{root}}/{NEW}",
                                   *TINY_TRAIN], "bad budget (--budget) 'speed=3'"),
    ("run-budget-and-target", ["run", "--model", "alexnet", "--budget", "flops=30M", "--target", "0.5", "--out",
                               f"{{root}}/{NEW}", *TINY_TRAIN], "--budget and --target both"),
    ("compare-budget-and-target", ["compare", "--model", "alexnet", "--budget", "flops=30M", "--target", "0.5",
                                   "--out", f"{{root}}/{NEW}", *TINY_TRAIN], "--budget and --target both"),
    ("compare-budget-and-metric", ["compare", "--model", "alexnet", "--budget", "flops=30M", "--metric", "params",
                                   "--out", f"{{root}}/{NEW}", *TINY_TRAIN], "--budget and --metric both"),
    ("run-table-without-budget", ["run", "--model", "alexnet", "--latency-table", "{root}/table-torch.json",
                                  "--out", f"{{root}}/{NEW}", *TINY_TRAIN], "goes with a budget"),
    ("run-table-of-another-runtime", ["run", "--model", "alexnet", "--budget", "latency=1ms", "--latency-table",
                                      "{root}/table-torch.json", "--runtime", "onnxruntime", "--out",
                                      f"{{root}}/{NEW}", *TINY_TRAIN], "measured in torch, but the plan is for"),
    ("compare-table-of-another-model", ["compare", "--model", "alexnet", "--budget", "latency=1ms",
                                        "--latency-table", "{root}/table-vgg16.json", "--out", f"{{root}}/{NEW}",
                                        *TINY_TRAIN], "another architecture"),
    ("run-table-without-latency-limit", ["run", "--model", "alexnet", "--budget", "flops=30M", "--latency-table",
                                         "{root}/table-torch.json", "--out", f"{{root}}/{NEW}", *TINY_TRAIN],
     "serves latency limits only"),
    ("run-int8-in-torch", ["run", "--model", "alexnet", "--budget", "flops=30M", "--precision", "int8", "--runtime",
                           "torch", "--out", f"{{root}}/{NEW}", *TINY_TRAIN], "int8 models run in ONNX Runtime"),
    ("run-int8-with-an-fp32-table", ["run", "--model", "alexnet", "--budget", "latency=1ms", "--precision", "int8",
                                     "--latency-table", "{root}/table-torch.json", "--out", f"{{root}}/{NEW}",
                                     *TINY_TRAIN], "times fp32 layers, but the plan is for int8"),
    ("sweep-budgets-empty-entry", ["sweep", "--model", "alexnet", "--budgets", "flops=60M;;flops=30M", "--out",
                                   f"{{root}}/{NEW}", *TINY_TRAIN], "has an empty budget"),
    ("sweep-budgets-and-targets", ["sweep", "--model", "alexnet", "--budgets", "flops=60M", "--targets", "0.5",
                                   "--out", f"{{root}}/{NEW}", *TINY_TRAIN], "--budgets and --targets both"),
    ("sweep-budgets-other-axis", ["sweep", "--model", "alexnet", "--budgets", "flops=60M;params=1M", "--out",
                                  f"{{root}}/{NEW}", *TINY_TRAIN], "sets no flops limit"),
    ("bench-file-of-no-run", ["bench", "alexnet", "--file", "{root}/afile"], "give the run directory"),
    ("bench-file-of-another-run", ["bench", "{root}/dense", "--file", "{root}/pruned.onnx"],
     "exported from another model than the run"),
    # --init, --keep and --distill: the weights and the teacher are checked before anything is written.
    ("init-mismatched-file", ["train", "alexnet", "--init", "{root}/alexnet-4-classes.safetensors", "--out",
                              f"{{root}}/{NEW}", *TINY_TRAIN], "tensor classifier.6.weight is 4×1024, the model's is 10×1024"),
    ("init-not-safetensors", ["train", "alexnet", "--init", "{root}/afile", "--out", f"{{root}}/{NEW}", *TINY_TRAIN],
     "cannot read weights file"),
    ("init-missing", ["train", "alexnet", "--init", "{root}/no-such-run", "--out", f"{{root}}/{NEW}", *TINY_TRAIN],
     "no such run directory or weights file"),
    ("init-interrupted-run", ["train", "alexnet", "--init", "{root}/interrupted", "--out", f"{{root}}/{NEW}",
                              *TINY_TRAIN], "is not a finished run"),
    ("init-run-of-another-model", ["train", "vgg16", "--init", "{root}/dense", "--out", f"{{root}}/{NEW}",
                                   *TINY_TRAIN], "another architecture"),
    ("init-on-compare", ["compare", "--model", "alexnet", "--methods", "dense,fa", "--init", "{root}/afile", "--out",
                         f"{{root}}/{NEW}", *TINY_TRAIN], "cannot read weights file"),
    ("keep-without-init", ["train", "alexnet", "--keep", "random", "--out", f"{{root}}/{NEW}", *TINY_TRAIN],
     "--keep chooses which inherited filters"),
    ("distill-weight-above-1", ["train", "alexnet", "--distill", "{root}/dense", "--distill-weight", "2", "--out",
                                f"{{root}}/{NEW}", *TINY_TRAIN], "distill_weight must be in [0, 1]"),
    ("distill-temperature-0", ["train", "alexnet", "--distill", "{root}/dense", "--distill-temperature", "0", "--out",
                               f"{{root}}/{NEW}", *TINY_TRAIN], "distill_temperature must be"),
    ("distill-temperature-alone", ["train", "alexnet", "--distill-temperature", "2", "--out", f"{{root}}/{NEW}",
                                   *TINY_TRAIN], "add --distill RUN"),
    ("distill-other-task", ["train", "dncnn", "--task", "denoise", "--distill", "{root}/dense", "--out",
                            f"{{root}}/{NEW}", *TINY_TRAIN], "was trained for task classify, this run for denoise"),
    ("distill-interrupted-run", ["train", "alexnet", "--distill", "{root}/interrupted", "--out", f"{{root}}/{NEW}",
                                 *TINY_TRAIN], "is not a finished run"),
    ("distill-other-shape", ["train", "alexnet", "--distill", "{root}/dense", "--input", "3,16,16", "--data",
                             "{root}/one-class-two", "--out", f"{{root}}/{NEW}", *TINY_TRAIN[2:]], "takes input 3x32x32"),
    ("compare-train-budget", ["compare", "--model", "alexnet", "--methods", "dense,fa", "--train-budget",
                              "dense-epochs=0", "--out", f"{{root}}/{NEW}", *TINY_TRAIN], "bad training budget"),
    ("run-train-budget", ["run", "--model", "alexnet", "--train-budget", "epochs=3", "--out", f"{{root}}/{NEW}",
                          *TINY_TRAIN], "give dense-epochs=N"),
    # A model reference that cannot be imported: one line naming it, whatever the import raised.
    ("model-not-python", ["profile", "/etc/passwd:x"], "not a Python file"),
    ("model-import-fails", ["profile", "usermodels.broken:Net"], "cannot import usermodels.broken"),
    ("model-import-fails-file", ["profile", f"{USERMODELS}/broken.py:Net"], "operator torchvision::nms"),
]


@pytest.mark.parametrize("argv, message", [(argv, message) for _, argv, message in CASES],
                         ids=[case_id for case_id, _, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(root, argv, message, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same refusal on a GPU machine
    before = tree(root)
    code, out, err = run_cli(capsys, *[a.format(root=root) for a in argv])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert tree(root) == before


def test_a_refused_start_leaves_the_default_run_free(tmp_path, capsys):
    """`cdprune run` always resumes: a refused bad setting must not pin its folder to that setting."""
    argv = ["run", "--model", "alexnet", "--out", tmp_path / "job", *TINY_TRAIN]
    assert run_cli(capsys, *argv, "--lr", "0")[0] == 2
    assert not (tmp_path / "job").exists()
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err


def test_settings_of_a_start_that_never_finished_an_epoch_do_not_block(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"model": "alexnet", "data": "synthetic", "lr": 0.5}))
    code, _, err = run_cli(capsys, "train", "alexnet", "--out", out, "--resume", *TINY_TRAIN)
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["lr"] != 0.5


def test_a_corrupt_checkpoint_names_the_way_out(root, tmp_path, capsys):
    run = tmp_path / "corrupt"
    shutil.copytree(root / "corrupt", run)
    code, _, err = run_cli(capsys, "train", "alexnet", "--resume", "--out", run, *TINY_TRAIN, "--epochs", "2")
    assert code == 2
    path = err.split("checkpoint ", 1)[1].split(" is damaged")[0]  # the message names the file to delete
    os.unlink(path)
    code, _, err = run_cli(capsys, "train", "alexnet", "--out", run, *TINY_TRAIN, "--epochs", "2")
    assert code == 0, err


def test_resume_removes_temp_files_of_killed_writers(root, tmp_path, capsys):
    run = tmp_path / "interrupted"
    shutil.copytree(root / "interrupted", run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = run / f".checkpoint.safetensors.{dead.pid}.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    code, _, err = run_cli(capsys, "train", "alexnet", "--resume", "--out", run, *TINY_TRAIN, "--epochs", "2")
    assert code == 0, err
    assert not stale.exists() and (run / "metrics.json").exists()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    run = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from cdprune.storage import lock_directory
        with lock_directory({str(run)!r}):
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree(run)
        code, _, err = run_cli(capsys, "train", "alexnet", "--out", run, *TINY_TRAIN)
        assert code == 2 and str(run) in err and f"pid {holder.pid}" in err, err
        assert len(err.strip().splitlines()) == 1 and tree(run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, _, err = run_cli(capsys, "train", "alexnet", "--out", run, *TINY_TRAIN)  # the kernel freed the lock
    assert code == 0, err


def test_a_full_disk_mid_run_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    import errno

    import cdprune.runs.training as runs

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "model.safetensors"))

    monkeypatch.setattr(runs, "save_weights", full)
    code, _, err = run_cli(capsys, "train", "alexnet", "--out", tmp_path / "run", *TINY_TRAIN)
    errors = [line for line in err.strip().splitlines() if not line.startswith("cdprune: warning:")]  # 2 steps/epoch
    assert code == 1 and len(errors) == 1 and "disk is full" in err, err
    assert not (tmp_path / "run" / "metrics.json").exists()
