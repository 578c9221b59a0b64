"""Image restoration: transposed and grouped convs in the profile and the planner, the dncnn and unet
models, the denoise and sr tasks (training, resume, eval, reports, export), PSNR and SSIM."""
import copy
import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

import cdprune
from cdprune import RunSettings, models
from cdprune.storage import load_weights
from cdprune.tasks import input_scores, psnr, ssim
from cdprune.train import TrainConfig, evaluate, train
from support import ctrl_c_in_epoch, run_cli

# A DnCNN small enough to train in about a second on synthetic 3×32×32 images.
TINY_DNCNN = {"depth": 4, "width": 8}
TINY_DENOISE = RunSettings("dncnn", "synthetic", model_args=TINY_DNCNN, epochs=2, train_subset=64, test_subset=32,
                           batch_size=16, task="denoise")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only add overhead on a shared machine
    yield
    torch.set_num_threads(before)


class MixedNet(nn.Module):
    """A plain conv, a strided conv, a grouped conv, a grouped transposed conv and a concatenated skip."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        self.g = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2, groups=2)
        self.c = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        a = self.a(x)
        return x + self.out(self.c(torch.cat([self.up(self.g(self.b(a))), a], 1)))


def test_profile_counts_transposed_and_grouped_convs():
    net = MixedNet()
    prof = cdprune.profile(net, (1, 12, 12))
    by_hand = {  # params, MACs, output bytes; 12×12 in, 6×6 after the stride-2 conv
        "a.0": (8 * 1 * 9 + 8, 8 * 1 * 9 * 144, 8 * 144 * 4),
        "b.0": (16 * 8 * 9 + 16, 16 * 8 * 9 * 36, 16 * 36 * 4),
        "g": (16 * 4 * 9 + 16, 16 * 4 * 9 * 36, 16 * 36 * 4),  # 4 groups: 4 inputs per filter
        # weight (in 16, out/groups 4, 2, 2), applied once per *input* position (6×6), output 8×12×12
        "up": (16 * 4 * 4 + 8, 16 * 4 * 4 * 36, 8 * 144 * 4),
        "c.0": (8 * 16 * 9 + 8, 8 * 16 * 9 * 144, 8 * 144 * 4),
        "out": (8 + 1, 8 * 144, 144 * 4),
    }
    assert {layer.name: (layer.params, layer.flops, layer.memory_bytes) for layer in prof.layers} == by_hand
    assert prof.layer("up").transposed and not prof.layer("g").transposed
    net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 1, 12, 12))
    assert prof.totals.flops == counter.get_total_flops() // 2  # it counts 2 FLOPs per multiply-accumulate
    assert prof.totals.params == sum(p.numel() for p in net.parameters())


def test_grouped_convs_are_pruned_by_group_and_grouped_transposed_convs_excluded():
    report = cdprune.prunable_units(MixedNet(), (1, 12, 12))
    assert [(u.name, u.groups) for u in report.units] == [("a.0", 1), ("b.0", 4), ("c.0", 1)]
    excluded = {e.name: e.reason for e in report.excluded}
    assert excluded == {"g": "they feed the grouped transposed conv up (groups=2), which cdprune does not prune",
                        "up": "they are the output of the grouped transposed conv up (groups=2), which cdprune does "
                              "not prune",
                        "out": "they reach the network output"}


class ResNeXtBlock(nn.Module):
    """A bottleneck whose 3×3 conv has 4 groups, in a residual add, then a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.c1, self.bn1 = nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32)
        self.c2, self.bn2 = nn.Conv2d(32, 32, 3, padding=1, groups=4), nn.BatchNorm2d(32)
        self.c3, self.bn3 = nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.bn3(self.c3(torch.relu(self.bn2(self.c2(torch.relu(self.bn1(self.c1(x))))))))
        return self.head(torch.relu(x + y).mean((2, 3)))


def test_resnext_block_is_pruned_group_consistently():
    torch.manual_seed(0)
    net, shape = ResNeXtBlock().eval(), (3, 16, 16)
    for bn in (net.stem[1], net.bn1, net.bn2, net.bn3):  # BN that is not the identity, so every channel counts
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    # A seed that draws both grouped units; unrounded, so a draw can take a single channel per group.
    plan = cdprune.make_plan(net, shape, "fa", 0.5, seed=1, round_to=1)
    assert plan.reduction["flops"] >= 0.5
    units = {u.name: u for u in plan.units}
    for name in ("c1", "c2"):  # the same in-group positions go from each of the 4 groups
        kept = units[name].kept
        assert len(kept) < 32 and all([c + 8 * k for c in kept if c < 8] == [c for c in kept if 8 * k <= c < 8 * k + 8]
                                      for k in range(4))
    pruned = cdprune.apply_plan(copy.deepcopy(net), plan).eval()
    assert pruned.c2.groups == 4 and pruned.c2.in_channels == len(units["c1"].kept)
    assert cdprune.profile(pruned, shape).totals == plan.after
    # Zeroing the removed channels' BN in the dense net must give exactly the pruned net's output:
    # the kept weights are the right ones, group by group.
    masked = copy.deepcopy(net)
    for name, bns in (("stem.0", (masked.stem[1], masked.bn3)), ("c1", (masked.bn1,)), ("c2", (masked.bn2,))):
        gone = sorted(set(range(units[name].channels)) - set(units[name].kept))
        for bn in bns:
            bn.weight.data[gone] = 0
            bn.bias.data[gone] = 0
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(masked(x), pruned(x), atol=1e-6)


@pytest.mark.parametrize("name", ["dncnn", "unet"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 30, 30)])
def test_restoration_models_return_an_image_of_the_input_shape(name, shape):
    net = models.create(name, in_channels=shape[0])
    x = torch.rand(2, *shape)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), x)  # the residual branch starts at zero: the identity
    last = cdprune.profile(net, shape).layers[-1].output_shape
    # The U-Net pads 30×30 to 32×32, a multiple of 2² for its two down-samplings, and crops back.
    assert last == (shape if name == "dncnn" or shape[1] % 4 == 0 else (shape[0], 32, 32))


def test_dncnn_has_the_papers_shape():
    prof = cdprune.profile(models.create("dncnn", in_channels=1), (1, 28, 28))
    assert len(prof.layers) == 17
    assert [layer.out_channels for layer in prof.layers] == [64] * 16 + [1]
    bn = [m for m in models.create("dncnn").modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn) == 15  # BN in the middle layers only


def test_unet_plan_prunes_the_units_around_transposed_convs():
    shape = (1, 28, 28)
    # Equal-probability draws: the transposed convs hold little of the FLOPs, so fa seldom draws them.
    # Unrounded, so a draw removes few channels and the sampler visits many units before the target.
    plan = cdprune.make_plan(models.create("unet", in_channels=1), shape, "layer-random", 0.5, seed=0, round_to=1)
    units = {u.name: u for u in plan.units}
    # up.0 and up.1 are the transposed convs; down.2.3 and merge.0.3 feed them.
    for name in ("up.0", "up.1", "down.2.3", "merge.0.3"):
        assert len(units[name].kept) < units[name].channels, name
    pruned = cdprune.apply_plan(models.create("unet", in_channels=1), plan)
    assert cdprune.profile(pruned, shape).totals == plan.after
    assert pruned.up[0].weight.shape[:2] == (len(units["down.2.3"].kept), len(units["up.0"].kept))
    assert pruned(torch.zeros(2, *shape)).shape == (2, *shape)
    excluded = cdprune.prunable_units(models.create("unet", in_channels=1), shape).excluded
    assert [(e.name, e.reason) for e in excluded] == [("out", "they reach the network output")]


def test_prune_verbose_lists_the_excluded_units(tmp_path, capsys):
    code, out, err = run_cli(capsys, "prune", "dncnn", "--input", "1,28,28", "--verbose", "--out", tmp_path / "p.json")
    assert code == 0, err
    assert "not prunable:" in out and "body.47" in out and "they reach the network output" in out


# ---- metrics -----------------------------------------------------------------------------------

def test_psnr_by_hand():
    clean = torch.zeros(2, 1, 2, 2, dtype=torch.float64)  # float32 holds no exact 0.1
    out = clean.clone()
    out[0] += 0.1  # MSE 0.01: 20 dB
    out[1, 0, 0, 0] = 0.5  # MSE 0.25 / 4: 10·log10(16)
    assert psnr(out, clean).tolist() == pytest.approx([20.0, 10 * math.log10(16)], abs=1e-9)
    assert psnr(clean, clean).tolist() == [pytest.approx(100.0)] * 2  # exact: floored MSE, not infinity


def test_ssim_of_constant_images_by_hand():
    # Constant images: no variance, so SSIM = (2ab + C1) / (a² + b² + C1), whatever the window.
    a, b, c1 = 0.2, 0.6, 0.01 ** 2
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    assert ssim(x, x).item() == pytest.approx(1.0)


def test_ssim_of_one_window_by_hand():
    # An 11×11 image holds exactly one window: the Gaussian-weighted statistics by direct sums.
    rng = np.random.default_rng(0)
    x = np.where(rng.random((11, 11)) < 0.5, 0.2, 0.9)  # two levels
    y = np.clip(x + rng.normal(0, 0.1, (11, 11)), 0, 1)
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy, cov = (w * x * x).sum() - mx ** 2, (w * y * y).sum() - my ** 2, (w * x * y).sum() - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    got = ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None]).item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert 0 < got < 1


# ---- tasks -------------------------------------------------------------------------------------

def test_denoise_pairs_fresh_in_training_fixed_in_testing():
    task = cdprune.tasks.create("denoise", noise=50)
    base = cdprune.data.load_dataset("synthetic", "test", subset=20)
    test = task.wrap(base, train=False)
    (noisy, clean), (again, _) = test[3], test[3]
    assert torch.equal(noisy, again)  # the test noise of an image never changes
    assert clean.min() >= 0 and clean.max() <= 1 and clean.dtype == torch.float32
    assert torch.allclose(clean, base.pixels(3).float() / 255)  # the [0, 1] scale, not normalised
    assert (noisy - clean).std().item() == pytest.approx(50 / 255, rel=0.1)
    train_pairs = task.wrap(cdprune.data.load_dataset("synthetic", "train", subset=20, augment="none"), train=True)
    assert not torch.equal(train_pairs[0][0], train_pairs[0][0])  # fresh noise at every draw


def test_sr_input_is_the_bicubic_round_trip():
    task = cdprune.tasks.create("sr", scale=4)
    x = torch.zeros(1, 8, 8)
    x[:, :4] = 1.0  # top half white: its 2×2 down-sampled image is exact, the round trip blurs the edge
    degraded = task.degrade(x)
    assert degraded.shape == x.shape and degraded.min() >= 0 and degraded.max() <= 1
    assert degraded[0, 0, 0] == pytest.approx(1.0, abs=0.05) and degraded[0, 7, 0] == pytest.approx(0.0, abs=0.05)
    assert 0.2 < degraded[0, 3, 0] < 1.0  # the edge is smeared


def test_task_settings_are_checked():
    with pytest.raises(cdprune.CdpruneError, match="noise .* applies to task denoise"):
        cdprune.tasks.create("sr", noise=10)
    with pytest.raises(cdprune.CdpruneError, match="scale .* must be one of 2, 4"):
        cdprune.tasks.create("sr", scale=3)
    with pytest.raises(cdprune.CdpruneError, match="does not apply to task classify"):
        cdprune.tasks.create("classify", loss="l1")


def smooth_images(n: int, seed: int):
    """n smooth 1×16×16 images (4×4 random grids, enlarged bilinearly), as a dataset of cdprune.data."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.rand(n, 1, 4, 4, generator=g)
    images = (nn.functional.interpolate(grids, size=(16, 16), mode="bilinear") * 255).round().to(torch.uint8)
    return cdprune.data.from_dataset(TensorDataset(images, torch.arange(n) % 2), num_classes=2,
                                     input_shape=(1, 16, 16), mean=(0.5,), std=(0.25,))


def test_denoise_trains_above_the_noisy_input(tmp_path):
    settings = RunSettings("dncnn", "smooth", model_args=TINY_DNCNN, epochs=4, batch_size=16, lr=0.003,
                           task="denoise")
    train_set, test_set = smooth_images(128, seed=1), smooth_images(32, seed=2)
    metrics = cdprune.train_run(tmp_path / "run", settings, datasets=(train_set, test_set), progress=False)
    model, _ = cdprune.load_run(tmp_path / "run")
    task = settings.make_task()
    # The training images with fixed noise: the images the network was fitted to.
    seen = task.wrap(train_set, train=False)
    noisy_psnr, _ = input_scores(seen)
    denoised = evaluate(model, seen, task=task)
    assert denoised.score > noisy_psnr + 1.0, (denoised.score, noisy_psnr)
    assert metrics.score_name == "PSNR" and metrics.test_acc is None and metrics.score > metrics.input_psnr
    assert metrics.input_psnr == pytest.approx(input_scores(task.wrap(test_set, train=False))[0])
    assert cdprune.eval_run(tmp_path / "run", test_set=test_set).matches


@pytest.fixture(scope="module")
def denoise_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("denoise") / "run"
    cdprune.train_run(out, TINY_DENOISE, progress=False)
    return out


def test_denoise_resume_is_bit_exact(tmp_path, denoise_run):
    broken = tmp_path / "broken"
    with ctrl_c_in_epoch(2), pytest.raises(cdprune.TrainingInterrupted):
        cdprune.train_run(broken, TINY_DENOISE, progress=False)
    metrics = cdprune.train_run(broken, TINY_DENOISE, resume=True, progress=False)
    straight, resumed = load_weights(denoise_run / "model.safetensors"), load_weights(broken / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert metrics.score == cdprune.load_run(denoise_run)[1].score
    with pytest.raises(cdprune.CdpruneError, match="noise"):  # another σ is another run
        cdprune.train_run(broken, replace(TINY_DENOISE, noise=50.0), resume=True, progress=False)


def test_denoise_run_records_eval_and_history(denoise_run, capsys):
    metrics = json.loads((denoise_run / "metrics.json").read_text())
    assert metrics["task"] == "denoise" and metrics["score_name"] == "PSNR" and metrics["settings"]["lr"] == 0.001
    assert 0 < metrics["ssim"] < 1 and metrics["input_psnr"] < 30
    with open(denoise_run / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "lr", "train_loss", "train_psnr", "test_loss", "test_psnr", "test_ssim",
                       "train_time_s", "epoch_time_s"]
    assert float(rows[-1][5]) == metrics["score"]
    code, out, err = run_cli(capsys, "eval", denoise_run)
    assert code == 0 and "test PSNR" in out and "matches the record" in out, err


def test_denoise_run_exports_an_image_output(denoise_run, tmp_path):
    import onnx
    result = cdprune.export_run(denoise_run, "onnx", tmp_path / "m.onnx")
    assert result.output == "image"
    assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == ["image"]


def test_a_model_that_does_not_fit_the_task_is_refused_before_writing(tmp_path, capsys):
    tiny = ["--data", "synthetic", "--epochs", "1", "--train-subset", "32", "--test-subset", "16", "--no-progress"]
    code, _, err = run_cli(capsys, "train", "alexnet", "--task", "denoise", "--out", tmp_path / "a", *tiny)
    assert code == 2 and "does not fit task denoise" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(capsys, "train", "dncnn", "--model-args", json.dumps(TINY_DNCNN), "--out", tmp_path / "b",
                           *tiny)
    assert code == 2 and "does not fit task classify" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_image_pairs_under_the_classify_task_are_refused(tmp_path):
    # The silent failure this guards against: (noisy, clean) pairs trained as "classification".
    clean = torch.rand(32, 1, 8, 8)
    pairs = TensorDataset(clean + 0.1 * torch.randn_like(clean), clean)
    net = models.create("unet", in_channels=1, model_args={"width": 4, "levels": 2})
    with pytest.raises(cdprune.CdpruneError, match="not class labels: train it with --task denoise or sr") as info:
        train(net, pairs, pairs, TrainConfig(epochs=1, batch_size=8, device="cpu", progress=False), tmp_path)
    assert "\n" not in str(info.value)


def test_compare_checks_the_baselines_on_denoising(tmp_path):
    settings = RunSettings("dncnn", "synthetic", model_args=TINY_DNCNN, epochs=1, train_subset=32, test_subset=16,
                           batch_size=16, task="denoise")
    result = cdprune.compare(tmp_path, settings, ["dense", "fa", "uniform", "l1"], 0.5, progress=False)
    summaries = {s.method: s for s in result.summaries}
    assert set(summaries) == {"dense", "fa", "uniform", "l1"}
    for s in summaries.values():
        assert s.score_name == "PSNR" and s.acc_mean is None and 0 < s.ssim_mean < 1
    assert summaries["fa"].reduction["flops"] >= 0.5 and summaries["l1"].reduction["flops"] >= 0.5
    header = (tmp_path / "compare.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["method", "seeds", "psnr_mean", "psnr_std", "ssim_mean"]
    assert "test PSNR" in (tmp_path / "compare.md").read_text()


def test_a_plan_that_prunes_groups_unevenly_is_refused():
    net = ResNeXtBlock()
    plan = cdprune.make_plan(net, (3, 16, 16), "fa", 0.5, seed=1)
    units = [replace(u, kept=tuple(range(1, 32))) if u.name == "c1" else u for u in plan.units]  # one group only
    with pytest.raises(cdprune.CdpruneError, match="same channels in each of its 4 groups"):
        cdprune.apply_plan(net, replace(plan, units=tuple(units)))


def test_task_options_of_another_task_are_refused_before_writing(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "alexnet", "--noise", "30", "--data", "synthetic", "--out", tmp_path / "r",
                           "--no-progress")
    assert code == 2 and "noise (--noise) applies to task denoise, not classify" in err, err
    assert not (tmp_path / "r").exists()


# ---- exported files and sample pictures ---------------------------------------------------------

INT8_PSNR_TOLERANCE_DB = 0.5  # int8 of a tiny DnCNN on 32×32 images: measured within 0.05 dB of fp32


def test_denoise_int8_export_compares_psnr(denoise_run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "export", denoise_run, "--int8", "--calibration-images", "16", "--out",
                             tmp_path / "q.onnx", "--json")
    assert code == 0, err
    c = json.loads(out)["comparison"]
    recorded = cdprune.load_run(denoise_run)[1].score
    assert c["score_name"] == "PSNR" and c["recorded_score"] == recorded and c["recorded_acc"] is None
    assert c["fp32"]["test_acc"] is None and c["int8"]["test_acc"] is None  # no PSNR under an accuracy's name
    assert abs(c["fp32"]["score"] - recorded) < 0.01
    assert abs(c["int8"]["score"] - c["fp32"]["score"]) < INT8_PSNR_TOLERANCE_DB
    assert c["int8"]["score"] == pytest.approx(cdprune.eval_onnx(denoise_run, tmp_path / "q.onnx").score)
    text = cdprune.report.export_text(cdprune.ExportResult(**json.loads(out)))
    rows = {line.split("  ")[0]: line.split() for line in text.splitlines()}
    assert rows["test PSNR"][2:4] == [f"{c['fp32']['score']:.2f}", "dB"] and "accuracy" not in text


def test_denoise_int8_is_calibrated_on_noisy_inputs(denoise_run):
    from cdprune.deploy.export import calibration_set
    from cdprune.runs import run_data
    images = calibration_set(denoise_run, 8)
    train_set, _ = run_data(denoise_run, "train")
    picked = np.sort(np.random.default_rng(TINY_DENOISE.seed).choice(len(train_set), size=8, replace=False))
    noisy = [train_set.task.degrade(train_set.base.pixels(int(i)).float() / 255, int(i)) for i in picked]
    assert np.array_equal(images, torch.stack(noisy).numpy())  # un-augmented images, fixed noise of σ 25
    assert images.min() < 0 and images.max() > 1  # noisy, not the clean images


def test_eval_onnx_of_a_denoise_run_reproduces_its_psnr(denoise_run, tmp_path, capsys):
    cdprune.export_run(denoise_run, "onnx", tmp_path / "m.onnx")
    code, out, err = run_cli(capsys, "eval", denoise_run, "--onnx", tmp_path / "m.onnx", "--json")
    assert code == 0, err
    result, recorded = json.loads(out), cdprune.load_run(denoise_run)[1]
    assert result["score_name"] == "PSNR" and result["test_acc"] is None and result["test_size"] == 32
    assert abs(result["score"] - recorded.score) < 0.01 and result["recorded_score"] == recorded.score
    assert result["test_loss"] == pytest.approx(cdprune.eval_run(denoise_run).test_loss, rel=1e-4)
    code, out, _ = run_cli(capsys, "eval", denoise_run, "--onnx", tmp_path / "m.onnx")
    assert out.startswith(f"test PSNR {result['score']:.2f} dB on 32 images through ONNX Runtime")


def test_sr_run_exports_and_evaluates_its_onnx_file(tmp_path, capsys):
    settings = replace(TINY_DENOISE, task="sr", epochs=1)
    metrics = cdprune.train_run(tmp_path / "sr", settings, progress=False)
    code, out, err = run_cli(capsys, "export", tmp_path / "sr", "--out", tmp_path / "sr.onnx")
    assert code == 0, err
    result = cdprune.eval_onnx(tmp_path / "sr", tmp_path / "sr.onnx")
    assert result.score_name == "PSNR" and abs(result.score - metrics.score) < 0.01


def _png_pixels(path) -> torch.Tensor:
    from PIL import Image
    array = np.asarray(Image.open(path))
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()).int()


def test_eval_samples_writes_input_output_and_target(denoise_run, tmp_path, capsys):
    folder = tmp_path / "pictures"
    code, out, err = run_cli(capsys, "eval", denoise_run, "--samples", "2", "--samples-dir", folder)
    assert code == 0, err
    assert "matches the record" in out and f"2 samples written to {folder}" in out
    assert sorted(p.name for p in folder.iterdir()) == [f"000{i}-{name}.png" for i in (0, 1)
                                                         for name in ("input", "output", "target")]
    # Recomputed through the API: test image 1, its fixed noise, the run's model.
    model, _ = cdprune.load_run(denoise_run)
    noisy, clean = TINY_DENOISE.load("test")[1]
    with torch.no_grad():
        denoised = model.eval()(noisy[None])[0]

    def eight_bit(image):
        return (image.double().clamp(0, 1) * 255).round().int()

    assert torch.equal(_png_pixels(folder / "0001-input.png"), eight_bit(noisy))
    assert torch.equal(_png_pixels(folder / "0001-target.png"), eight_bit(clean))
    written = _png_pixels(folder / "0001-output.png")
    assert (written - eight_bit(denoised)).abs().max() <= 1  # batch of 2 vs 1: a rounding step at most
    assert (written == eight_bit(denoised)).float().mean() > 0.99
    assert written.shape == (3, 32, 32) and not torch.equal(written, _png_pixels(folder / "0001-input.png"))
    assert not list(folder.glob(".*.tmp"))


def test_eval_samples_default_folder_and_json(denoise_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(denoise_run, run)
    code, out, err = run_cli(capsys, "eval", run, "--samples", "1", "--json")
    assert code == 0, err
    samples = json.loads(out)["samples"]
    assert samples["folder"] == str(run / "samples") and samples["indices"] == [0] and samples["source"] == "pytorch"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["0000-input.png", "0000-output.png",
                                                                     "0000-target.png"]


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "whole number of at least 1, got 0"),
    (["--samples", "-2"], "whole number of at least 1, got -2"),
    (["--samples", "33"], "more pictures than the 32 test images"),
    (["--samples", "two"], "invalid int value"),
    (["--samples-dir", "{tmp}/pictures"], "add --samples N"),
])
def test_bad_samples_are_refused_without_writing(denoise_run, tmp_path, capsys, argv, message):
    from support import tree
    before = tree(denoise_run)
    code, out, err = run_cli(capsys, "eval", denoise_run, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == "", err
    assert tree(denoise_run) == before and not (tmp_path / "pictures").exists()


def test_main_job_writes_samples_of_both_runs(tmp_path, capsys):
    tiny = ["--model", "dncnn", "--model-args", json.dumps(TINY_DNCNN), "--task", "denoise", "--data", "synthetic",
            "--epochs", "1", "--train-subset", "32", "--test-subset", "16", "--batch-size", "16", "--no-progress"]
    code, _, err = run_cli(capsys, "run", *tiny, "--out", tmp_path / "refused", "--samples", "17")
    assert code == 2 and "more pictures than the 16 test images" in err and not (tmp_path / "refused").exists()
    code, out, err = run_cli(capsys, "run", *tiny, "--out", tmp_path / "job", "--samples", "1")
    assert code == 0, err
    folders = sorted(p.parent.parent.name for p in (tmp_path / "job").glob("*/samples/0000-output.png"))
    assert folders == ["dense", "fa-0.5"] and out.count("1 samples written to") == 2, out
