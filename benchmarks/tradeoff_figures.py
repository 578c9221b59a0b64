"""The paper's Figures 4–5 on Fashion-MNIST: accuracy against params, FLOPs, memory, latency, energy and CPU.

    python benchmarks/tradeoff_figures.py [--models alexnet,vgg16]   # about 40 minutes on a 2-core CPU
    python benchmarks/tradeoff_figures.py --smoke                    # a minute, synthetic data

For AlexNet and VGG-16 it sweeps dense plus every mode (pa, fa, ma, and the beyond-the-paper
modes that exist: ea, la) at targets 0.3/0.5/0.7/0.9, trains each point from scratch at the
model's budget below, measures it in a fresh process, and copies the two PNGs and the CSV of each
sweep to benchmarks/results/tradeoff-<model>-*. Runs live in benchmarks/runs/tradeoff (resumable;
a second run re-measures every point and redraws the figures without training again).
"""
import argparse
import shutil
from pathlib import Path

import cdprune

HERE = Path(__file__).parent
MODES = [m for m in ("pa", "fa", "ma", "ea", "la") if m in cdprune.MODES]
TARGETS = [0.3, 0.5, 0.7, 0.9]
# AlexNet trains about 2.4× faster than VGG-16 here, so it gets the larger budget (about 16 minutes
# for its sweep on a 2-core Zen 3, VGG-16's about 20).
# lr at batch 128: 0.02 at batch 32.
BUDGETS = {"alexnet": dict(epochs=3, train_subset=4000, test_subset=2000, batch_size=32, lr=0.08),
           "vgg16": dict(epochs=2, train_subset=2000, test_subset=1000, batch_size=32, lr=0.08)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="alexnet,vgg16")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    for model in args.models.split(","):
        if args.smoke:
            settings = cdprune.RunSettings(model, "synthetic", epochs=1, train_subset=64, test_subset=32, batch_size=32)
            root, results = Path("/tmp/cdprune-tradeoff-smoke") / model, Path("/tmp/cdprune-tradeoff-smoke")
        else:
            budget = BUDGETS.get(model, BUDGETS["vgg16"])  # other models get the small budget
            settings = cdprune.RunSettings(model, "fashion-mnist", **budget)
            root, results = HERE / "runs" / "tradeoff" / model, HERE / "results"
        sweep = cdprune.sweep(root, settings, MODES, TARGETS, bench_time_s=0.5 if args.smoke else 2.0, fps=10)
        for name in ("tradeoff_resources.png", "tradeoff_device.png", "sweep.csv"):
            stem, suffix = name.rsplit(".", 1)
            shutil.copyfile(Path(sweep.out) / name, results / f"tradeoff-{model}-{stem.replace('tradeoff_', '')}.{suffix}")
        print(cdprune.report.sweep_text(sweep))


if __name__ == "__main__":
    main()
