"""Does bf16 autocast keep the accuracy? Dense AlexNet (width 0.25), fp32 against `--autocast bf16`, 3 seeds.

    python benchmarks/bf16_accuracy.py       # about 8 minutes for the three bf16 runs on 2 cores (fp32 reused)

The fp32 runs are accuracy_at_compute.py's dense runs (same settings: 20,000 Fashion-MNIST images, 7 epochs,
batch 128, lr 0.05, all 10,000 test images), reused when that benchmark has made them. The bf16 runs differ only in
`autocast="bf16"` (forward pass and loss in bf16; weights, optimiser, evaluation fp32). The adoption rule (issue:
bf16 as a setting only if ≥ 1.3× faster with accuracy within the seed spread): the mean difference bf16 − fp32
within the fp32 runs' seed std. The speed half of the rule is benchmarks/results/train_speed.md. Writes
benchmarks/results/bf16_accuracy.{json,md}.
"""
import statistics
from dataclasses import asdict, replace
from pathlib import Path

import torch

import cdprune
from cdprune.measure.latency import cpu_description
from cdprune.storage import atomic_write_json, atomic_write_text

from accuracy_at_compute import RANKING, MODEL_ARGS, SEEDS

HERE = Path(__file__).parent
FP32 = HERE / "runs" / "accuracy-at-compute" / "ranking"
BF16 = HERE / "runs" / "bf16-accuracy"


def main() -> None:
    base = cdprune.RunSettings("alexnet", "fashion-mnist", model_args=MODEL_ARGS, **RANKING)
    runs = {"fp32": [], "bf16": []}
    for seed in SEEDS:
        settings = replace(base, seed=seed)
        runs["fp32"].append(cdprune.train_run(FP32 / f"seed-{seed}" / "dense", settings, resume=True,
                                              method="dense"))
        runs["bf16"].append(cdprune.train_run(BF16 / f"seed-{seed}", replace(settings, autocast="bf16"),
                                              resume=True, method="dense"))
    acc = {k: [100 * r.test_acc for r in v] for k, v in runs.items()}
    diffs = [b - f for f, b in zip(acc["fp32"], acc["bf16"])]
    spread = statistics.stdev(acc["fp32"])
    mean_diff = statistics.mean(diffs)
    within = abs(mean_diff) <= spread
    time_ratio = statistics.mean(f.train_time_s / b.train_time_s for f, b in zip(runs["fp32"], runs["bf16"]))
    record = {"cpu": cpu_description(), "threads": torch.get_num_threads(), "settings": asdict(base),
              "acc": acc, "converged": {k: [r.converged for r in v] for k, v in runs.items()},
              "train_time_s": {k: [r.train_time_s for r in v] for k, v in runs.items()},
              "diff_pt": diffs, "mean_diff_pt": mean_diff, "fp32_seed_std_pt": spread, "within_spread": within,
              "fp32_over_bf16_time": time_ratio}
    atomic_write_json(HERE / "results" / "bf16_accuracy.json", record)
    row = lambda k: (f"| {k} | {statistics.mean(acc[k]):.2f} ± {statistics.stdev(acc[k]):.2f} | "
                     f"{', '.join(f'{a:.2f}' for a in acc[k])} | "
                     f"{', '.join('yes' if r.converged else 'no' for r in runs[k])} | "
                     f"{statistics.mean(r.train_time_s for r in runs[k]):.0f} s |")
    atomic_write_text(HERE / "results" / "bf16_accuracy.md", "\n".join([
        "# bf16 autocast against fp32: dense AlexNet (width 0.25) on Fashion-MNIST, 3 seeds", "",
        f"{base.train_subset:,} training images, {base.epochs} epochs, batch {base.batch_size}, lr {base.lr}, "
        f"tested on all 10,000; CPU: {record['cpu']}, {record['threads']} torch threads (the fp32 runs come from "
        "accuracy_at_compute.py; wall times were taken beside other work, so their ratio is only indicative: "
        "train_speed.md has the speed).", "",
        "| precision | test accuracy (%) | per seed | converged | training time (mean) |", "|---|---|---|---|---|",
        row("fp32"), row("bf16"), "",
        f"bf16 − fp32, paired by seed: {mean_diff:+.2f} pt (per seed {', '.join(f'{d:+.2f}' for d in diffs)}); "
        f"fp32 seed std {spread:.2f} pt: {'within' if within else 'outside'} the spread.", ""]))
    print((HERE / "results" / "bf16_accuracy.md").read_text())


if __name__ == "__main__":
    main()
