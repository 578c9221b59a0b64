"""Training speed on this CPU: images/s, dense against the default plan (FA-0.5), fp32 against bf16 autocast.

    python benchmarks/train_speed.py                    # writes benchmarks/results/train_speed.{json,md}
    python benchmarks/train_speed.py --models vgg16     # re-measures vgg16, keeps the other models' rows
    python benchmarks/train_speed.py --smoke            # alexnet, EdgeNet and a small DnCNN, tiny sizes (< 1 min);
                                                        # writes to a temporary folder, never over the results

Every registered classification model, the user model tests/usermodels/edgenet.py:EdgeNet (by reference, as a
user names it) and DnCNN denoising (σ = 25), at 1×28×28, batch 64 (the main job's), on the CPU with torch's
default threads. Each model is timed dense and pruned by the default plan (`make_plan(model, shape, "fa", 0.5,
seed=0)`), in fp32 and with `--autocast bf16`, two ways, so that a slowdown can be traced. EdgeNet is also timed
with the plan unrounded (round_to 1, odd channel counts), as cdprune planned before round_to 8 became the default:

- `steps`: one training step (forward, loss, backward, optimiser step) on tensors already in memory, as the
  training loop takes it (channels-last, the task's loss and optimiser), timed by cdprune's timing protocol
  (measure/timing.py: warm-up calls, then the median of timed calls); images/s = batch / median.
- `loop`: cdprune's training loop (`train.train`, what `cdprune train` calls) on LOOP_IMAGES generated 1×28×28
  images in a .npz file, through the real data pipeline (augmentation, normalisation, the DataLoader); two
  epochs, the first a warm-up; images/s = the images of epoch 2 / its recorded training time.

The goal is a ratio FA/dense of at least 1.0: a pruned model never trains slower than dense. For each pruned
model the file also records how many of its convs have a channel count that is not a multiple of 8. Results are
written after each model, and a model already in the file with the same sizes is not measured again.
"""
import argparse
import json
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import cdprune
from cdprune import models
from cdprune.measure.latency import cpu_description
from cdprune.measure.timing import time_calls
from cdprune.runs import RunSettings
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.train import TrainConfig, epoch_batches, parameter_groups, train

HERE = Path(__file__).parent
RESULTS = HERE / "results"
EDGENET = str(HERE.parent / "tests" / "usermodels" / "edgenet.py") + ":EdgeNet"
SHAPE = (1, 28, 28)
CLASSES = 10
DEVICE = "cpu"
PRECISIONS = (None, "bf16")  # RunSettings.autocast: fp32, bf16 autocast
# name -> (model reference, model_args, task[, make_plan keywords])
RESTORATION_MODELS = ("dncnn", "unet")  # registered, but they map images to images: timed as dncnn below
CASES = {**{name: (name, {}, "classify") for name in models.names() if name not in RESTORATION_MODELS},
         "edgenet": (EDGENET, {}, "classify"),
         # The plan of cdprune before DEFAULT_ROUND_TO became 8, which own_data.md's 1.72× slower FA-0.5 ran.
         "edgenet-unrounded": (EDGENET, {}, "classify", {"round_to": 1}),
         # Multiples of 16: one AVX-512 register of fp32 (round_to 8 leaves EdgeNet a 24-channel conv).
         "edgenet-round16": (EDGENET, {}, "classify", {"round_to": 16}), "dncnn": ("dncnn", {}, "denoise")}
FULL = dict(batches=(64,), loop_images=2000, test_images=64, warmup=3, min_repeats=10, min_time_s=2.0,
            max_time_s=20.0)
SMOKE = dict(batches=(8,), loop_images=16, test_images=8, warmup=1, min_repeats=2, min_time_s=0.0,
             max_time_s=0.2)
SMOKE_CASES = {"alexnet": CASES["alexnet"], "edgenet": CASES["edgenet"],
               "dncnn": ("dncnn", {"depth": 5, "width": 16}, "denoise")}


def machine() -> dict:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), []) if Path("/proc/cpuinfo").exists() else []
    return {"cpu": cpu_description(), "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx"))),
            "threads": torch.get_num_threads(), "machine": platform.machine(), "torch": torch.__version__,
            "cdprune": cdprune.__version__, "device": DEVICE,
            "channels_last": TrainConfig().channels_last}  # the loop's memory format (train.py)


def write_npz(path: Path, n_train: int, n_test: int) -> None:
    """Class patterns plus noise, uint8 N×1×28×28: what the loop trains on (its speed does not depend on content)."""
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(CLASSES, *SHAPE))
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % CLASSES
        x = 0.5 + 0.18 * (patterns[y] + rng.normal(size=(n, *SHAPE)))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = (x.clip(0, 1) * 255).round().astype(np.uint8), y
    np.savez(path, **arrays)


def odd_convs(model: nn.Module) -> dict:
    """Convs whose input or output channels are not a multiple of 8 (the image's own channels, which a first conv
    reads and a restoration model's last conv writes, do not count)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    odd = [m for m in convs if any(c % 8 and c != SHAPE[0] for c in (m.in_channels, m.out_channels))]
    return {"convs": len(convs), "not_multiple_of_8": len(odd),
            "channels": [[m.in_channels, m.out_channels] for m in odd]}


def steps_per_s(model: nn.Module, settings: RunSettings, sizes: dict) -> float:
    """Images/s of training steps on in-memory tensors, as train.py's loop takes them."""
    config = settings.train_config(progress=False)
    task = config.task
    model = model.to(DEVICE, memory_format=torch.channels_last).train()
    optimizer = task.make_optimizer(parameter_groups(model, config.weight_decay), config)
    batch = settings.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *SHAPE, generator=g).to(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (batch,), generator=g) if task.name == "classify" else \
        torch.rand(batch, *SHAPE, generator=g).to(memory_format=torch.channels_last)

    def step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=settings.autocast == "bf16"):
            loss = task.training_loss(model(x), y, config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timing = time_calls(step, warmup=sizes["warmup"], min_repeats=sizes["min_repeats"],
                        min_time_s=sizes["min_time_s"], max_time_s=sizes["max_time_s"])
    return batch / (timing["p50_ms"] / 1000)


def loop_per_s(model: nn.Module, settings: RunSettings, folder: Path) -> float:
    """Images/s of the second of two epochs of cdprune's training loop."""
    settings = replace(settings, epochs=2).check()
    train_set, test_set = settings.load("train"), settings.load("test")
    result = train(model, train_set, test_set, settings.train_config(progress=False), folder)
    seen = sum(len(b) for b in epoch_batches(len(train_set), settings.batch_size, settings.seed, 2))
    return seen / result.history[-1].train_time_s


def measure_model(name: str, case: tuple, sizes: dict, data: Path, folder: Path) -> dict:
    ref, model_args, task, plan_kw = (*case, {})[:4]

    def fresh():
        torch.manual_seed(0)
        return models.create(ref, CLASSES, SHAPE[0], model_args)

    plan = cdprune.make_plan(fresh(), SHAPE, "fa", 0.5, seed=0, **plan_kw)
    variants = {"dense": lambda: fresh(), "fa-0.5": lambda: cdprune.apply_plan(fresh(), plan)}
    entry = {"model": ref, "model_args": model_args, "task": task, "plan_settings": plan_kw, "flops_reduction": plan.reduction["flops"],
             "odd_convs": {v: odd_convs(make()) for v, make in variants.items()}, "rows": []}
    for batch in sizes["batches"]:
        for precision in PRECISIONS:
            settings = RunSettings(model=ref, data=str(data), model_args=model_args, task=task, batch_size=batch,
                                   autocast=precision, device=DEVICE, seed=0)
            row = {"batch": batch, "precision": precision or "fp32"}
            for variant, make in variants.items():
                row[f"steps_{variant}"] = steps_per_s(make(), settings, sizes)
                row[f"loop_{variant}"] = loop_per_s(make(), settings, folder / f"{batch}-{row['precision']}-{variant}")
            for kind in ("steps", "loop"):
                row[f"{kind}_ratio"] = row[f"{kind}_fa-0.5"] / row[f"{kind}_dense"]
            entry["rows"].append(row)
            print(name, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                  flush=True)
    for row in entry["rows"]:  # bf16 over fp32, same model, batch and variant
        if row["precision"] != "fp32":
            base = next(r for r in entry["rows"] if r["batch"] == row["batch"] and r["precision"] == "fp32")
            for key in [k for k in row if k.startswith(("steps_", "loop_")) and not k.endswith("ratio")]:
                row[f"{key}_speedup"] = row[key] / base[key]
    return entry


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Training speed: dense against FA-0.5, fp32 against bf16 autocast", "",
             f"CPU: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX/AMX flags'}), {m['threads']} torch threads, "
             f"torch {m['torch']}; input 1×28×28; training loop channels-last: {m['channels_last']}. Images/s of "
             f"`steps` (training steps on in-memory tensors, median) and `loop` (cdprune's training loop on "
             f"{results['sizes']['loop_images']} images, second of two epochs). Ratio = FA-0.5 / dense (goal ≥ 1.0); "
             "bf16 speed-up = bf16 / fp32 images/s, dense and FA-0.5.", "",
             "| model | batch | precision | steps dense | steps FA-0.5 | ratio | loop dense | loop FA-0.5 | ratio "
             "| bf16 speed-up steps | bf16 speed-up loop | FA convs not ×8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in results["models"].items():
        odd = entry["odd_convs"]["fa-0.5"]
        for r in entry["rows"]:
            speedup = lambda kind: (f"{r[f'{kind}_dense_speedup']:.2f}× / {r[f'{kind}_fa-0.5_speedup']:.2f}×"
                                    if f"{kind}_dense_speedup" in r else "-")
            lines.append(f"| {name} | {r['batch']} | {r['precision']} | {r['steps_dense']:.0f} | "
                         f"{r['steps_fa-0.5']:.0f} | {r['steps_ratio']:.2f} | {r['loop_dense']:.0f} | "
                         f"{r['loop_fa-0.5']:.0f} | {r['loop_ratio']:.2f} | {speedup('steps')} | {speedup('loop')} | "
                         f"{odd['not_multiple_of_8']} of {odd['convs']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names among " + ", ".join(CASES))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and three small models, to a temporary "
                                                             "folder")
    args = parser.parse_args()
    cases, sizes = (SMOKE_CASES, SMOKE) if args.smoke else (CASES, FULL)
    chosen = list(cases) if args.models is None else args.models.split(",")
    unknown = [n for n in chosen if n not in cases]
    if unknown:
        sys.exit(f"unknown model(s) {', '.join(unknown)}: choose among {', '.join(cases)}")
    out = Path(tempfile.mkdtemp(prefix="train_speed-smoke-")) if args.smoke else RESULTS
    path = out / "train_speed.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    stored = {**sizes, "batches": list(sizes["batches"])}
    if results.get("sizes") != stored:
        results = {"sizes": stored, "models": {}}
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "images.npz"
        write_npz(data, sizes["loop_images"], sizes["test_images"])
        for name in chosen:
            if args.models is None and name in results["models"]:
                print(f"{name}: already in {path}, kept (name it in --models to measure it again)")
                continue
            results["models"][name] = measure_model(name, cases[name], sizes, data, Path(tmp) / name)
            atomic_write_json(path, results)
            atomic_write_text(path.with_suffix(".md"), markdown(results))
    print(markdown(results))
    print(f"written {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
