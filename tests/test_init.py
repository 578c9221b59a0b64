"""Accuracy at the budget: inherited weights (--init, --keep), distillation (--distill) and equal training
FLOPs (--train-budget), through the API and the CLI."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import cdprune
from cdprune import RunSettings, apply_plan, compare, make_plan, models, profile, tasks, train_run
from cdprune.methods import budget_epochs
from cdprune.storage import file_digest, load_weights, save_weights
from support import ctrl_c_in_epoch, run_cli

NET = str(Path(__file__).parent / "usermodels" / "tinynet.py") + ":TinyNet"
TINY = dict(data="synthetic", train_subset=64, test_subset=32, batch_size=32, device="cpu")
TINY_ARGS = ["--data", "synthetic", "--train-subset", "64", "--test-subset", "32", "--batch-size", "32",
             "--device", "cpu", "--no-progress"]
# |w| of the hand-set filters of HandNet.a: the largest first are 1 (2.0), 3 (1.5), 7 (1.1), 5 (0.9), 0 (0.3), …
HAND_WEIGHTS = [0.3, -2.0, 0.1, 1.5, -0.2, 0.9, 0.05, -1.1]
BY_L1 = [1, 3, 7, 5, 0, 4, 2, 6]


class HandNet(nn.Module):
    """Two 1×1 convs of 8 filters each; `a`'s filters are single numbers, so their L1 norms read off by hand."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 1, bias=False)
        self.bn_a = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.bn_a(self.a(x)).relu()
        return self.head(self.bn_b(self.b(x)).relu().mean((2, 3)))


def hand_net() -> nn.Module:
    torch.manual_seed(0)
    net = HandNet()
    with torch.no_grad():
        net.a.weight.copy_(torch.tensor(HAND_WEIGHTS).view(8, 1, 1, 1))
    return net


def test_keep_l1_inherits_the_largest_filters_by_hand():
    dense = hand_net()
    plan = make_plan(dense, (1, 4, 4), "fa", 0.5, round_to=1, seed=0)
    kept_a = next(u for u in plan.units if u.name == "a").kept
    kept_b = next(u for u in plan.units if u.name == "b").kept
    assert 0 < len(kept_a) < 8
    digest = plan.to_dict()["digest"]

    pruned = apply_plan(hand_net(), plan, keep="l1")
    top = sorted(BY_L1[:len(kept_a)])  # the hand ranking, not the plan's random draw
    assert top != list(kept_a)  # the seed-0 draw keeps others, so the rule shows
    assert torch.equal(pruned.a.weight.flatten(), torch.tensor([HAND_WEIGHTS[i] for i in top]))
    # b keeps its own top-L1 filters, and reads only a's kept channels
    b_norms = dense.b.weight.detach().abs().flatten(1).sum(1)
    top_b = sorted(torch.argsort(b_norms, descending=True)[:len(kept_b)].tolist())
    assert torch.equal(pruned.b.weight, dense.b.weight[top_b][:, top])
    assert torch.equal(pruned.bn_a.weight, dense.bn_a.weight[top])
    assert plan.to_dict()["digest"] == digest  # the plan itself is unchanged

    for keep in (None, "random"):  # the plan's own channels
        plain = apply_plan(hand_net(), plan, keep=keep)
        assert torch.equal(plain.a.weight, dense.a.weight[list(kept_a)])
        assert torch.equal(plain.b.weight, dense.b.weight[list(kept_b)][:, list(kept_a)])
    with pytest.raises(cdprune.CdpruneError, match="unknown keep rule"):
        apply_plan(hand_net(), plan, keep="l2")


def test_distillation_loss_of_classify_by_hand():
    student, teacher, label, t, alpha = [1.0, 2.0, 0.0], [2.0, 0.0, 1.0], 1, 2.0, 0.5

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    p_t, p_s = softmax([v / t for v in teacher]), softmax([v / t for v in student])
    kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    ce = -math.log(softmax(student)[label])
    expected = (1 - alpha) * ce + alpha * t * t * kl
    got = tasks.create("classify").distill_loss(torch.tensor([student]), torch.tensor([label]),
                                                torch.tensor([teacher]), alpha, t)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.5 * 0.4076059644 + 2 * kl, rel=1e-9)  # CE of [1, 2, 0] at class 1


def test_distillation_loss_of_restoration_by_hand():
    output, clean, teacher = (torch.tensor([[[[0.0, 0.5]]]]), torch.tensor([[[[0.0, 1.0]]]]),
                              torch.tensor([[[[1.0, 0.5]]]]))
    # MSE to the clean image (0 + 0.25) / 2 = 0.125, to the teacher's output (1 + 0) / 2 = 0.5
    got = tasks.create("denoise").distill_loss(output, clean, teacher, 0.5, 4.0)
    assert got.item() == pytest.approx(0.5 * 0.125 + 0.5 * 0.5)
    l1 = tasks.create("denoise", loss="l1").distill_loss(output, clean, teacher, 0.25, 4.0)
    assert l1.item() == pytest.approx(0.75 * 0.25 + 0.25 * 0.5)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "dense"
    train_run(out, RunSettings(NET, epochs=1, **TINY), progress=False)
    return out


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    make_plan(models.create(NET, 10, 3), (3, 32, 32), "fa", 0.5, round_to=1).save(path)
    return path


def _same(a: Path, b: Path) -> bool:
    wa, wb = load_weights(a / "model.safetensors"), load_weights(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_init_run_inherits_and_records(dense, plan, tmp_path):
    settings = RunSettings(NET, epochs=1, lr=1e-12, **TINY, init=str(dense))
    metrics = train_run(tmp_path / "run", settings, cdprune.PruningPlan.load(plan), progress=False)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["init"] == str(dense) and recorded["keep"] == "l1"
    assert recorded["init_digest"] == file_digest(dense / "model.safetensors")
    assert metrics.settings["init_digest"] == recorded["init_digest"]
    dense_metrics = cdprune.runs.read_metrics(dense)
    assert metrics.pretrain_flops == dense_metrics.train_flops and metrics.pretrain_epochs == 1
    # At lr 1e-12 training barely moves the weights: they are the dense conv's filters of largest L1 norm.
    trained = load_weights(dense / "model.safetensors")["conv.weight"]
    kept = len(cdprune.PruningPlan.load(plan).units[0].kept)
    top = sorted(torch.argsort(trained.abs().flatten(1).sum(1), descending=True)[:kept].tolist())
    pruned = load_weights(tmp_path / "run" / "model.safetensors")["conv.weight"]
    assert torch.allclose(pruned, trained[top], atol=1e-6)
    assert cdprune.eval_run(tmp_path / "run", model=NET).matches  # load_run rebuilds it from the plan


def test_init_from_a_weights_file_is_the_same_as_from_the_run(dense, tmp_path, capsys):
    weights = tmp_path / "dense.safetensors"
    weights.write_bytes((dense / "model.safetensors").read_bytes())
    for name, source in (("from-run", dense), ("from-file", weights)):
        code, _, err = run_cli(capsys, "train", NET, "--init", source, "--epochs", "1", "--out", tmp_path / name,
                               *TINY_ARGS)
        assert code == 0, err
    assert _same(tmp_path / "from-run", tmp_path / "from-file")
    assert not _same(tmp_path / "from-run", dense)  # it trained on from the dense weights
    file_run = cdprune.runs.read_metrics(tmp_path / "from-file")
    assert file_run.pretrain_flops == 0 and file_run.settings["init_digest"] == file_digest(weights)


def test_a_mismatched_init_file_is_refused_before_writing(tmp_path, capsys):
    other = models.create(NET, 10, 3).state_dict()
    other["head.weight"] = torch.zeros(10, 4)
    save_weights(tmp_path / "other.safetensors", other)
    code, _, err = run_cli(capsys, "train", NET, "--init", tmp_path / "other.safetensors", "--out", tmp_path / "run",
                           "--epochs", "1", *TINY_ARGS)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "tensor head.weight is 10×4, the model's is 10×8" in err
    assert not (tmp_path / "run").exists()


def test_a_pruned_run_is_refused_as_init(dense, plan, tmp_path, capsys):
    assert run_cli(capsys, "train", NET, "--plan", plan, "--out", tmp_path / "pruned", "--epochs", "1",
                   *TINY_ARGS)[0] == 0
    code, _, err = run_cli(capsys, "train", NET, "--init", tmp_path / "pruned", "--out", tmp_path / "run",
                           "--epochs", "1", *TINY_ARGS)
    assert code == 2 and "is a pruned run" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags", [["--init"], ["--distill"], ["--init", "--distill"]],
                         ids=["init", "distill", "both"])
def test_resume_of_init_and_distill_runs_is_bit_exact(dense, plan, tmp_path, capsys, flags):
    argv = ["train", NET, "--plan", plan, "--epochs", "2", *TINY_ARGS]
    for flag in flags:
        argv += [flag, dense]
    assert run_cli(capsys, *argv, "--out", tmp_path / "straight")[0] == 0
    with ctrl_c_in_epoch(2):
        assert run_cli(capsys, *argv, "--out", tmp_path / "broken")[0] == 130
    assert run_cli(capsys, *argv, "--out", tmp_path / "broken", "--resume")[0] == 0
    assert _same(tmp_path / "straight", tmp_path / "broken")
    recorded = json.loads((tmp_path / "broken" / "run.json").read_text())
    if "--distill" in flags:
        assert recorded["distill_digest"] == file_digest(dense / "model.safetensors")
        assert (recorded["distill_temperature"], recorded["distill_weight"]) == (4.0, 0.5)


def test_distillation_changes_training_and_its_settings_are_compared_on_resume(dense, plan, tmp_path, capsys):
    argv = ["train", NET, "--plan", plan, "--epochs", "2", *TINY_ARGS]
    assert run_cli(capsys, *argv, "--out", tmp_path / "plain")[0] == 0
    with ctrl_c_in_epoch(2):
        assert run_cli(capsys, *argv, "--distill", dense, "--out", tmp_path / "taught")[0] == 130
    code, _, err = run_cli(capsys, *argv, "--distill", dense, "--distill-weight", "0.9", "--out", tmp_path / "taught",
                           "--resume")
    assert code == 2 and "distill_weight=0.5, now 0.9" in err
    assert run_cli(capsys, *argv, "--distill", dense, "--out", tmp_path / "taught", "--resume")[0] == 0
    assert not _same(tmp_path / "plain", tmp_path / "taught")


def test_budget_epochs_from_flops_counted_by_hand():
    # TinyNet at 3×32×32: conv 8·3·3·3 weights × 1024 positions = 221,184 MACs, head 8·10 = 80.
    dense_flops = 8 * 3 * 9 * 32 * 32 + 8 * 10
    assert profile(models.create(NET, 10, 3), (3, 32, 32)).totals.flops == dense_flops == 221_264
    half = 4 * 3 * 9 * 32 * 32 + 4 * 10  # 4 filters kept: 110,632, exactly half
    assert budget_epochs(3, dense_flops, half) == 6
    assert budget_epochs(3, 10, 4) == 7  # ⌊7.5⌋: never past the budget
    assert budget_epochs(1, 10, 11) == 1  # at least one epoch


def test_compare_under_a_training_budget(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, text, err = run_cli(capsys, "compare", "--model", NET, "--methods", "dense,uniform,l1", "--target", "0.5",
                              "--round-to", "1", "--train-budget", "dense-epochs=2", "--out", out, *TINY_ARGS)
    assert code == 0, err
    data = json.loads((out / "compare.json").read_text())
    assert data["train_budget"] == {"dense_epochs": 2}
    runs = {name: rs[0] for name, rs in data["runs"].items()}
    dense_flops, half = 221_264, 110_632
    assert runs["dense"]["flops"] == dense_flops and runs["uniform"]["flops"] == half
    assert runs["dense"]["epochs"] == 2 and runs["uniform"]["epochs"] == 4  # ⌊2 × 221,264 / 110,632⌋
    # l1: the most dense epochs E with E + ⌈E/2⌉ half-cost epochs within 2 dense epochs is 1; the fine-tune gets the
    # remaining dense epoch's FLOPs: 2 epochs of the half-size model.
    assert runs["l1"]["pretrain_epochs"] == 1 and runs["l1"]["epochs"] == 2
    assert (out / "seed-0" / "dense-1ep" / "metrics.json").exists()
    images = runs["dense"]["train_size"]
    for name in ("dense", "uniform", "l1"):
        total = runs[name]["train_flops"] + runs[name]["pretrain_flops"]
        assert total == 3 * dense_flops * images * 2  # the same training FLOPs for every method
    summaries = {s["method"]: s for s in data["summaries"]}
    assert summaries["l1"]["epochs"] == 2 and summaries["l1"]["pretrain_epochs"] == 1
    assert summaries["l1"]["train_flops"] == 3 * dense_flops * images * 2 and summaries["l1"]["train_time_s"] > 0
    assert "1+2" in text and "train FLOPs" in text and "train time" in text
    assert "FLOPs of 2 dense epochs" in (out / "compare.md").read_text()
    header = (out / "compare.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["epochs", "pretrain_epochs"]


def test_a_budgeted_ranking_method_trains_only_its_own_dense_stage(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, _, err = run_cli(capsys, "compare", "--model", NET, "--methods", "l1", "--target", "0.5", "--round-to", "1",
                           "--train-budget", "dense-epochs=2", "--out", out, *TINY_ARGS)
    assert code == 0, err
    assert sorted(p.name for p in (out / "seed-0").iterdir()) == ["dense-1ep", "l1"]  # no unused 2-epoch dense run
