"""Accuracy at equal training compute: cdprune's routes against the l1 baseline, counted in training FLOPs.

    python benchmarks/accuracy_at_compute.py                  # both parts: about an hour, resumable
    python benchmarks/accuracy_at_compute.py --only ranking   # or --only transfer
    python benchmarks/accuracy_at_compute.py --smoke          # about a minute on 2 idle cores, tiny fake data in /tmp

(a) ranking: AlexNet at width 0.25 on Fashion-MNIST (20,000 training images, class-balanced, all 10,000 test
images; a third of the training set keeps the 15 trainings within about 40 minutes on one core), batch 128,
lr 0.05, 7 dense epochs, −50 % FLOPs, seeds 0, 1, 2. Per seed, five routes:
  1. dense, 7 epochs;
  2. l1: the dense model pruned by L1 norm, fine-tuned 7 epochs at a tenth of the lr (compare's l1 recipe,
     with 7 fine-tuning epochs); its training FLOPs are the dense stage's plus the fine-tune's;
  3. fa from scratch, with the most epochs whose training FLOPs stay within 0.6 × l1's total;
  4. fa --init dense, fine-tuned at l1's fine-tuning lr with the epochs whose FLOPs come nearest l1's fine-tune;
  5. as 4, with --distill dense (the teacher's forward passes are not in cdprune's training FLOPs: they are
     reported in a column of their own, 1 × the dense model's MACs per image seen).
(b) transfer: a dense source model trained on Fashion-MNIST classes 0–4 (4 epochs, seed 0), then a target of
100 training images per class of classes 5–9 (labels 0–4), tested on all their test images; every target route
gets the same 40 epochs at batch 25 (20 steps per epoch), from scratch at lr 0.05, from trained weights at 0.005.

Run directories live in benchmarks/runs/accuracy-at-compute/ and are reused when finished; after every
training benchmarks/results/accuracy_at_compute.{json,md} are rewritten (atomically) from the runs finished so far.
"""
from __future__ import annotations

import argparse
import gzip
import io
import math
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

import cdprune
from cdprune.data.idx import IMAGES_MAGIC, LABELS_MAGIC, load_idx
from cdprune.methods import FINETUNE_LR_FACTOR, get_method
from cdprune.measure.latency import cpu_description
from cdprune.runs import TRAINING_PASSES, read_metrics
from cdprune.storage import atomic_write_bytes, atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
MODEL_ARGS = {"width": 0.25}
TARGET = 0.5  # the fraction of FLOPs every pruned route removes
SEEDS = (0, 1, 2)
SCRATCH_SHARE = 0.6  # route 3's training FLOPs, at most this share of l1's total
RANKING = dict(epochs=7, batch_size=128, lr=0.05, train_subset=20000)  # lr at batch 128
L1_FINETUNE_EPOCHS = 7
SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
SHOTS, SHOTS_SEED = 100, 0  # target training images per class, and the seed that picks them
SOURCE = dict(epochs=4, batch_size=128, lr=0.05, seed=0)
# 500 target images at batch 25: 20 steps per epoch, none dropped; 40 epochs are 800 steps, for every target route.
# (Testing on the 5,000 target test images after each epoch costs more than the epoch's training.)
TRANSFER = dict(epochs=40, batch_size=25, lr=0.05)
RESULTS = "accuracy_at_compute"

RANKING_ROUTES = {
    "dense": "1 dense",
    "l1": "2 l1 (dense → L1 prune → fine-tune)",
    "fa-scratch": "3 fa from scratch (≤ 0.6 × l1's FLOPs)",
    "fa-init": "4 fa --init dense",
    "fa-init-distill": "5 fa --init dense --distill dense",
}
TRANSFER_ROUTES = {
    "dense-ft": "dense fine-tune (--init source)",
    "l1": "l1 (source → L1 prune → fine-tune)",
    "fa-scratch": "fa from scratch",
    "fa-init": "fa --init source",
    "fa-init-distill": "fa --init source --distill dense fine-tune",
}


@dataclass(frozen=True)
class Setup:
    """Where the runs and results go and what they train on: the full benchmark, or the smoke check's tiny copy."""

    root: Path
    results: Path
    ranking: cdprune.RunSettings
    source: dict
    transfer: dict
    shots: int
    fashion_dir: Path | None  # None: the system's Fashion-MNIST (/usr/share/datasets/fashion-mnist)
    seeds: tuple[int, ...] = SEEDS
    l1_finetune_epochs: int = L1_FINETUNE_EPOCHS
    progress: bool = True
    smoke: bool = False


def full_setup() -> Setup:
    ranking = cdprune.RunSettings("alexnet", "fashion-mnist", model_args=MODEL_ARGS, **RANKING)
    return Setup(HERE / "runs" / "accuracy-at-compute", HERE / "results", ranking, SOURCE, TRANSFER, SHOTS, None)


def smoke_setup() -> Setup:
    base = Path("/tmp/cdprune-accuracy-at-compute-smoke")
    shutil.rmtree(base, ignore_errors=True)
    ranking = cdprune.RunSettings("alexnet", "synthetic", model_args=MODEL_ARGS, epochs=2, batch_size=16,
                                  train_subset=32, test_subset=16)
    fake = write_fake_fashion(base / "fashion", per_class_train=8, per_class_test=3)
    # Two seeds (the fewest that give a spread), two epochs (the fewest that give a convergence flag).
    return Setup(base / "runs", base / "results", ranking, dict(epochs=2, batch_size=16, lr=0.05, seed=0),
                 dict(epochs=2, batch_size=8, lr=0.05), 4, fake, seeds=SEEDS[:2], l1_finetune_epochs=2,
                 progress=False, smoke=True)


# ---- FLOPs and epochs ----------------------------------------------------------------------------------------

def epoch_flops(plan: cdprune.PruningPlan, train_size: int) -> float:
    """Training FLOPs of one epoch of the plan's model, counted as cdprune counts a run's train_flops."""
    return float(TRAINING_PASSES * plan.after.flops * train_size)


def epochs_within(flops: float, per_epoch: float) -> int:
    """The most epochs whose training FLOPs stay within `flops` (at least 1)."""
    return max(1, math.floor(flops / per_epoch))


def epochs_nearest(flops: float, per_epoch: float) -> int:
    """The epochs whose training FLOPs come nearest `flops` (at least 1)."""
    return max(1, round(flops / per_epoch))


def fa_plan(settings: cdprune.RunSettings) -> cdprune.PruningPlan:
    """The plan compare's fa trains for this seed: sampled at −50 % FLOPs with the planner's defaults."""
    info = settings.dataset_info()
    model = cdprune.models.create(settings.model, info.num_classes, info.input_shape[0], settings.model_args)
    return cdprune.make_plan(model, info.input_shape, "fa", TARGET, target_metric="flops", seed=settings.seed,
                             **cdprune.PlannerConfig().to_dict())


def l1_plan(dense_dir: Path, settings: cdprune.RunSettings) -> cdprune.PruningPlan:
    """compare's l1 plan: the trained dense model's filters ranked by L1 norm, per layer, to −50 % FLOPs."""
    trained, _ = cdprune.load_run(dense_dir, settings.model)
    planner = cdprune.PlannerConfig()
    return get_method("l1").rank(trained, settings.dataset_info().input_shape, TARGET, "flops", floor=planner.floor,
                                 round_to=planner.round_to, step=planner.step)


def finetune_settings(settings: cdprune.RunSettings, epochs: int) -> cdprune.RunSettings:
    """A fine-tune from trained weights: compare's l1 recipe, a tenth of the lr."""
    return replace(settings, epochs=epochs, lr=settings.lr * FINETUNE_LR_FACTOR)


# ---- training -------------------------------------------------------------------------------------------------

class Trainer:
    """Trains (or reuses) one run at a time and rewrites the results after each."""

    def __init__(self, setup: Setup):
        self.setup = setup

    def __call__(self, run_dir: Path, settings: cdprune.RunSettings, plan=None, *, init_from: Path | None = None,
                 name: str) -> cdprune.RunMetrics:
        state = "finished, reused" if (run_dir / "metrics.json").exists() else \
            f"training {settings.epochs} epochs"
        print(f"{run_dir.relative_to(self.setup.root)}: {state}", file=sys.stderr, flush=True)
        metrics = cdprune.train_run(run_dir, settings, plan, resume=True, progress=self.setup.progress,
                                    init_from=init_from, method=name)
        write_results(self.setup)
        return metrics


def run_ranking(setup: Setup, train: Trainer) -> None:
    root = setup.root / "ranking"
    for seed in setup.seeds:
        settings = replace(setup.ranking, seed=seed)
        runs = root / f"seed-{seed}"
        dense = train(runs / "dense", settings, name="dense")
        l1 = train(runs / "l1", finetune_settings(settings, setup.l1_finetune_epochs),
                   l1_plan(runs / "dense", settings), init_from=runs / "dense", name="l1")
        plan = fa_plan(settings)
        per_epoch = epoch_flops(plan, dense.train_size)
        scratch = epochs_within(SCRATCH_SHARE * l1.total_train_flops, per_epoch)
        train(runs / "fa-scratch", replace(settings, epochs=scratch), plan, name="fa-scratch")
        finetune = finetune_settings(settings, epochs_nearest(l1.train_flops, per_epoch))
        init = replace(finetune, init=str(runs / "dense"))
        train(runs / "fa-init", init, plan, name="fa-init")
        train(runs / "fa-init-distill", replace(init, distill=str(runs / "dense")), plan, name="fa-init-distill")


def run_transfer(setup: Setup, train: Trainer) -> None:
    root = setup.root / "transfer"
    source_npz, target_npz = write_transfer_data(root / "data", setup.fashion_dir, setup.shots)
    source_settings = cdprune.RunSettings("alexnet", str(source_npz), model_args=MODEL_ARGS, **setup.source)
    source = root / "source-dense"
    train(source, source_settings, name="source-dense")
    for seed in setup.seeds:
        settings = cdprune.RunSettings("alexnet", str(target_npz), model_args=MODEL_ARGS, seed=seed, **setup.transfer)
        finetune = finetune_settings(settings, settings.epochs)  # every target route trains the same epochs
        runs = root / f"seed-{seed}"
        train(runs / "dense-ft", replace(finetune, init=str(source)), name="dense-ft")
        train(runs / "l1", finetune, l1_plan(source, settings), init_from=source, name="l1")
        plan = fa_plan(settings)
        train(runs / "fa-scratch", settings, plan, name="fa-scratch")
        init = replace(finetune, init=str(source))
        train(runs / "fa-init", init, plan, name="fa-init")
        train(runs / "fa-init-distill", replace(init, distill=str(runs / "dense-ft")), plan, name="fa-init-distill")


# ---- the transfer data ----------------------------------------------------------------------------------------

def write_transfer_data(folder: Path, fashion_dir: Path | None, shots: int) -> tuple[Path, Path]:
    """source.npz (classes 0–4, every image) and target.npz (`shots` training images per class of 5–9, picked with
    SHOTS_SEED, every test image of 5–9), labels numbered 0–4; files already there are kept."""
    source, target = folder / "source.npz", folder / "target.npz"
    if source.exists() and target.exists():
        return source, target
    split = {s: load_idx("fashion-mnist", s, fashion_dir, 10, (28, 28)) for s in ("train", "test")}
    names = cdprune.data.dataset_info("fashion-mnist").class_names
    (x_train, y_train), (x_test, y_test) = ((x.numpy()[:, 0], y.numpy()) for x, y in (split["train"], split["test"]))
    rng = np.random.default_rng(SHOTS_SEED)
    picked = np.concatenate([np.sort(rng.choice(np.flatnonzero(y_train == c), shots, replace=False))
                             for c in TARGET_CLASSES])
    for path, classes, train_index in ((source, SOURCE_CLASSES, np.flatnonzero(np.isin(y_train, SOURCE_CLASSES))),
                                       (target, TARGET_CLASSES, picked)):
        test_index = np.flatnonzero(np.isin(y_test, classes))
        relabel = np.full(10, -1)
        relabel[list(classes)] = np.arange(len(classes))
        buffer = io.BytesIO()
        np.savez(buffer, x_train=x_train[train_index], y_train=relabel[y_train[train_index]],
                 x_test=x_test[test_index], y_test=relabel[y_test[test_index]],
                 class_names=np.array([names[c] for c in classes]))
        atomic_write_bytes(path, buffer.getvalue())
    return source, target


def write_fake_fashion(folder: Path, per_class_train: int, per_class_test: int) -> Path:
    """Fashion-MNIST-shaped IDX files of random images (each class a brighter band), for the smoke check."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        images = rng.integers(0, 100, (labels.size, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c:2 * c + 6] += 120
        image_name, label_name = ("train", "t10k")[split == "test"], ("train", "t10k")[split == "test"]
        for name, array, magic in ((f"{image_name}-images-idx3-ubyte.gz", images, IMAGES_MAGIC),
                                   (f"{label_name}-labels-idx1-ubyte.gz", labels, LABELS_MAGIC)):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            atomic_write_bytes(folder / name, gzip.compress(header + array.tobytes()))
    return folder


# ---- results --------------------------------------------------------------------------------------------------

def finished(run_dir: Path) -> cdprune.RunMetrics | None:
    return read_metrics(run_dir) if (run_dir / "metrics.json").exists() else None


def seed_row(run: cdprune.RunMetrics, l1: cdprune.RunMetrics | None, teacher: cdprune.RunMetrics | None) -> dict:
    """One finished run; `teacher`'s forward passes over the images the run saw are 1 × its MACs per image."""
    return {"acc": run.test_acc, "epochs": run.epochs, "pretrain_epochs": run.pretrain_epochs,
            "converged": run.converged, "last_epoch_gain": run.last_epoch_gain, "flops": run.flops,
            "train_flops_total": run.total_train_flops, "train_flops_last_stage": run.train_flops,
            "pretrain_flops": run.pretrain_flops,
            "teacher_forward_flops": float(teacher.flops * run.train_size * run.epochs) if teacher else 0.0,
            "train_time_s_total": run.total_train_time_s, "train_time_s_last_stage": run.train_time_s,
            "lr": run.settings.get("lr"), "batch_size": run.settings.get("batch_size"),
            "total_flops_vs_l1": run.total_train_flops / l1.total_train_flops if l1 else None,
            "last_stage_flops_vs_l1_finetune": run.train_flops / l1.train_flops if l1 else None}


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def summarise(root: Path, routes: dict, seeds: tuple[int, ...], teachers: dict) -> dict:
    """Every route over the seeds finished so far: per-seed rows, means, and the paired differences to l1.
    teachers: route -> the route of the same seed whose run taught it."""
    runs = {route: {seed: finished(root / f"seed-{seed}" / route) for seed in seeds} for route in routes}
    summary = {}
    for route, label in routes.items():
        done = {seed: run for seed, run in runs[route].items() if run is not None}
        rows = {seed: seed_row(run, runs["l1"][seed], runs[teachers[route]][seed] if route in teachers else None)
                for seed, run in done.items()}
        column = lambda key: [row[key] for row in rows.values()]
        acc_mean, acc_std = mean_std(column("acc"))
        diffs = [rows[s]["acc"] - runs["l1"][s].test_acc for s in rows if runs["l1"][s] is not None]
        diff_mean, diff_std = mean_std(diffs) if route != "l1" else (None, None)
        summary[route] = {
            "label": label, "seeds": sorted(done), "acc_mean": acc_mean, "acc_std": acc_std,
            "not_converged": [s for s, row in rows.items() if row["converged"] is False],
            **{f"{key}_mean": mean_std(column(key))[0] for key in (
                "train_flops_total", "train_flops_last_stage", "teacher_forward_flops",
                "train_time_s_total", "train_time_s_last_stage")},
            "minus_l1_mean": diff_mean,
            "minus_l1_se": diff_std / math.sqrt(len(diffs)) if diff_std is not None else None,
            "minus_l1_seeds": len(diffs) if route != "l1" else 0,
            "per_seed": rows}
    return summary


def ranking_goals(summary: dict) -> dict:
    """(i) fa from scratch within 0.6 × l1's total FLOPs, at least −1 SE from l1; (ii) fa --init (with or without
    distillation) above l1 by more than 1 SE at l1's fine-tuning FLOPs. None: not enough seeds finished."""
    def beyond(route: str, least_se: float) -> bool | None:
        s = summary[route]
        return None if s["minus_l1_se"] is None else s["minus_l1_mean"] > least_se * s["minus_l1_se"]

    within = [row["total_flops_vs_l1"] <= SCRATCH_SHARE for row in summary["fa-scratch"]["per_seed"].values()
              if row["total_flops_vs_l1"] is not None]
    first = beyond("fa-scratch", -1)
    second = [beyond(route, 1) for route in ("fa-init", "fa-init-distill")]
    return {"i_scratch_matches_l1_at_0.6_flops": None if first is None else first and all(within),
            "i_flops_within_share": all(within) if within else None,
            "ii_init_beats_l1_at_equal_finetune_flops": True if any(second) else None if None in second else False}


def cpu_record() -> dict:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    return {"cpu": cpu_description(), "threads": torch.get_num_threads(),
            "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))}


def write_results(setup: Setup) -> None:
    """accuracy_at_compute.{json,md} from every run finished so far, both parts."""
    ranking = summarise(setup.root / "ranking", RANKING_ROUTES, setup.seeds, {"fa-init-distill": "dense"})
    transfer = summarise(setup.root / "transfer", TRANSFER_ROUTES, setup.seeds, {"fa-init-distill": "dense-ft"})
    source = finished(setup.root / "transfer" / "source-dense")
    record = {"smoke": setup.smoke, **cpu_record(), "torch": torch.__version__,
              "settings": {"model": "alexnet", "model_args": MODEL_ARGS, "target_flops_reduction": TARGET,
                           "seeds": list(setup.seeds), "ranking": asdict(setup.ranking),
                           "l1_finetune_epochs": setup.l1_finetune_epochs, "scratch_share": SCRATCH_SHARE,
                           "finetune_lr_factor": FINETUNE_LR_FACTOR, "source": setup.source,
                           "transfer": setup.transfer, "shots_per_class": setup.shots, "shots_seed": SHOTS_SEED,
                           "source_classes": list(SOURCE_CLASSES), "target_classes": list(TARGET_CLASSES)},
              "ranking": {"routes": ranking, "goals": ranking_goals(ranking)},
              "transfer": {"source": None if source is None else seed_row(source, None, None), "routes": transfer}}
    atomic_write_json(setup.results / f"{RESULTS}.json", record)
    atomic_write_text(setup.results / f"{RESULTS}.md", markdown(setup, record))


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def flops_text(x: float | None) -> str:
    return "—" if not x else f"{x:.3g}"


def epochs_text(rows: dict) -> str:
    """'7+7': earlier stages + this run's epochs; seeds that differ are listed by seed order ('13/13/12')."""
    shown = [f"{row['pretrain_epochs']}+{row['epochs']}" if row["pretrain_epochs"] else str(row["epochs"])
             for row in rows.values()]
    return "—" if not shown else shown[0] if len(set(shown)) == 1 else "/".join(shown)


def not_converged_text(seeds: list[int]) -> str:
    return "none" if not seeds else f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def route_table(summary: dict) -> list[str]:
    header = ["route", "seeds", "test accuracy (%)", "not converged", "epochs", "training FLOPs, all stages",
              "fine-tune FLOPs", "teacher forward FLOPs", "wall, all stages", "wall, fine-tune", "− l1 (pt) ± SE"]
    rows = []
    for s in summary.values():
        fine_tune = any(row["pretrain_flops"] for row in s["per_seed"].values())
        acc = "—" if s["acc_mean"] is None else pct(s["acc_mean"]) + (
            f" ± {pct(s['acc_std'])}" if s["acc_std"] is not None else "")
        diff = "—" if s["minus_l1_mean"] is None else f"{100 * s['minus_l1_mean']:+.2f}" + (
            f" ± {100 * s['minus_l1_se']:.2f}" if s["minus_l1_se"] is not None else "")
        rows.append([s["label"], str(len(s["seeds"])), acc, not_converged_text(s["not_converged"]),
                     epochs_text(s["per_seed"]), flops_text(s["train_flops_total_mean"]),
                     flops_text(s["train_flops_last_stage_mean"]) if fine_tune else "—",
                     flops_text(s["teacher_forward_flops_mean"]),
                     "—" if s["train_time_s_total_mean"] is None else f"{s['train_time_s_total_mean']:.0f} s",
                     f"{s['train_time_s_last_stage_mean']:.0f} s" if fine_tune else "—", diff])
    return [cdprune.formatting.markdown_table(header, rows)]


def per_seed_lines(summary: dict, routes: tuple[str, ...]) -> list[str]:
    lines = []
    for route in routes:
        for seed, row in summary[route]["per_seed"].items():
            lines.append(f"- {route}, seed {seed}: {row['epochs']} epochs, this stage "
                         f"{row['last_stage_flops_vs_l1_finetune']:.3f} × l1's fine-tuning FLOPs, all stages "
                         f"{row['total_flops_vs_l1']:.3f} × l1's total" if row["total_flops_vs_l1"] is not None
                         else f"- {route}, seed {seed}: {row['epochs']} epochs (l1 of this seed not finished)")
    return lines


def convergence_lines(summary: dict) -> list[str]:
    flagged = [f"{s['label']} (seed {seed}: +{100 * s['per_seed'][seed]['last_epoch_gain']:.2f} pt in the last epoch)"
               for s in summary.values() for seed in s["not_converged"]]
    if not flagged:
        return ["No model is flagged not converged (no last epoch raised the test accuracy by more than 1 pt)."]
    return ["**Flagged not converged** (the test accuracy rose more than 1 pt in the last epoch, so more epochs "
            "would likely still help): " + "; ".join(flagged) + "."]


def verdict(value: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "not decided yet (runs missing)"}[value]


def markdown(setup: Setup, record: dict) -> str:
    ranking, transfer = record["ranking"]["routes"], record["transfer"]["routes"]
    goals = record["ranking"]["goals"]
    s, lr_ft = setup.ranking, setup.ranking.lr * FINETUNE_LR_FACTOR
    data = f"{s.train_subset:,} Fashion-MNIST training images (class-balanced), tested on all 10,000" if not setup.smoke else \
        f"SMOKE CHECK ONLY: {s.train_subset} synthetic images, tested on {s.test_subset}"
    distilled = goals["ii_init_beats_l1_at_equal_finetune_flops"]
    lines = [
        "# Accuracy at equal training compute: AlexNet (width 0.25), −50 % FLOPs, against l1", "",
        f"CPU: {record['cpu']}, {record['threads']} torch threads; flags {' '.join(record['cpu_flags']) or 'none'}; "
        f"torch {record['torch']}; wall times were taken beside other work on the same 2 cores, so compare "
        "FLOPs, not seconds. FLOPs are cdprune's count (multiply-accumulates); training FLOPs are 3 × the "
        "forward MACs per image × images × epochs, as every run records them. Accuracy: mean ± std over seeds "
        f"{', '.join(map(str, setup.seeds))}; '− l1' is paired by seed, ± its standard error (std of the per-seed "
        "differences / √n). Epochs 'a+b': a epochs of the stage the run starts from, then b of its own.", "",
        "## (a) Ranking under the new recipe", "",
        f"{data}; batch {s.batch_size}, lr {s.lr} at batch 128 (cosine, {s.warmup:.0%} warm-up), dense "
        f"{s.epochs} epochs. l1 prunes the trained dense model by L1 norm and fine-tunes {setup.l1_finetune_epochs} "
        f"epochs at lr {lr_ft:g}. fa from scratch gets the most epochs whose training FLOPs stay within "
        f"{SCRATCH_SHARE} × l1's total (dense stage + fine-tune). fa --init dense (filters kept by L1 norm) "
        f"fine-tunes at lr {lr_ft:g} for the epochs whose FLOPs come nearest l1's fine-tune (rounded to the "
        "nearest epoch: per-seed ratios below); route 5 adds the seed's dense run as teacher (T = 4, α = 0.5). "
        "cdprune's training FLOPs do not count the teacher's forward passes: the teacher column gives them "
        "(dense MACs × images × epochs). The dense stage of routes 2, 4 and 5 is route 1's run.",
        "", *route_table(ranking), "",
        f"- Goal (i), from scratch: fa matches or beats l1 (difference > −1 SE) at ≤ {SCRATCH_SHARE} × l1's total "
        f"training FLOPs: {verdict(goals['i_scratch_matches_l1_at_0.6_flops'])}.",
        "- Goal (ii), given the trained dense model: route 4 or 5 beats l1 by > 1 SE at l1's fine-tuning FLOPs: "
        f"{verdict(distilled)}" + (" (route 5's teacher forward passes are extra: see its column)." if distilled
                                   else "."), "",
        "FLOPs against l1 of the same seed:", "",
        *per_seed_lines(ranking, ("fa-scratch", "fa-init", "fa-init-distill")), "",
        *convergence_lines(ranking), "",
        "## (b) Transfer to a small target", "", *transfer_intro(setup, record), "",
        *route_table(transfer), "", *convergence_lines(transfer), ""]
    return "\n".join(lines)


def transfer_intro(setup: Setup, record: dict) -> list[str]:
    src, tgt, source = setup.source, setup.transfer, record["transfer"]["source"]
    flag = {True: "converged", False: "FLAGGED NOT CONVERGED", None: "convergence not checked (one epoch)"}
    trained = "not finished yet" if source is None else \
        f"{pct(source['acc'])} % on the source test images, {flag[source['converged']]}"
    steps = (setup.shots * len(TARGET_CLASSES)) // tgt["batch_size"]
    return [
        f"Built from Fashion-MNIST{' (SMOKE CHECK ONLY: random fake images)' if setup.smoke else ''} with cdprune's "
        f"IDX reader. Source: classes 0–4, every training image, tested on their test images, labels 0–4. Target: "
        f"{setup.shots} training images per class of classes 5–9 (chosen with seed {SHOTS_SEED}), labels 5–9 → "
        "0–4, "
        "tested on every test image of classes 5–9. Both .npz files take the default augmentation of .npz data "
        "(random crops, no mirror at 28 × 28), as a user's would.", "",
        f"Source dense model: {src['epochs']} epochs, seed {src['seed']}, batch {src['batch_size']}, lr {src['lr']}: "
        f"{trained}.", "",
        f"Every target route: {tgt['epochs']} epochs at batch {tgt['batch_size']} ({steps} steps per epoch); from "
        f"scratch at lr {tgt['lr']}, from the source's weights at lr {tgt['lr'] * FINETUNE_LR_FACTOR:g} (lrs at "
        "batch 128). l1 and the --init routes count the source training in 'all stages'; the distilled route's "
        "teacher is the seed's dense fine-tune, whose own training is not counted in the student's FLOPs. The "
        "distilled route's wall time includes the teacher's forward passes."]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny fake data in /tmp: checks the script")
    parser.add_argument("--only", choices=("ranking", "transfer"), help="train one part (results keep both)")
    args = parser.parse_args(argv)
    setup = smoke_setup() if args.smoke else full_setup()
    print(f"CPU: {cpu_description()}", file=sys.stderr)
    train = Trainer(setup)
    if args.only in (None, "ranking"):
        run_ranking(setup, train)
    if args.only in (None, "transfer"):
        run_transfer(setup, train)
    write_results(setup)
    print((setup.results / f"{RESULTS}.md").read_text())


if __name__ == "__main__":
    main()
