"""Complexity-driven pruning against the baselines: VGG-16 on Fashion-MNIST, FLOPs target 0.5, 3 seeds.

    python benchmarks/compare_fashion_mnist.py            # about 50 minutes on a 2-core CPU
    python benchmarks/compare_fashion_mnist.py --smoke    # a minute, synthetic data: checks the script

Runs live in benchmarks/runs/compare/ (resumable: re-running continues or reuses them); results go to
benchmarks/results/compare_fashion_mnist.{json,md}.
Goals: fa's mean accuracy ≥ uniform's and within 1.0 point of dense's; the fa route's total training
compute ≤ 40 % of the l1 route's (train → prune → fine-tune), with accuracy within 0.5 point of l1's.
"""
import argparse
from dataclasses import asdict
from pathlib import Path

from cdprune.experiment import compare
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.formatting import markdown_table
from cdprune.report import compare_rows
from cdprune.runs import RunSettings

HERE = Path(__file__).parent
METHODS = ["dense", "pa", "fa", "ma", "uniform", "layer-random", "l1"]
# Sized so that 3 seeds × 7 methods (l1 reuses each seed's dense run) finish in well under 2 hours on 2 cores
# (about 50 min measured).
BUDGET = dict(epochs=3, train_subset=8000, test_subset=2000, batch_size=64, lr=0.04)  # lr at batch 128: 0.02 at batch 64


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run to check the script")
    args = parser.parse_args()
    if args.smoke:
        settings = RunSettings("alexnet", "synthetic", epochs=1, train_subset=100, test_subset=40, batch_size=32)
        root, results = Path("/tmp/cdprune-compare-smoke"), Path("/tmp/cdprune-compare-smoke/results")
    else:
        settings = RunSettings("vgg16", "fashion-mnist", seed=0, **BUDGET)
        root, results = HERE / "runs" / "compare", HERE / "results"
    summaries = {s.method: s for s in compare(root, settings, METHODS, 0.5, metric="flops", seeds=3).summaries}
    fa, uniform, dense, l1 = summaries["fa"], summaries["uniform"], summaries["dense"], summaries["l1"]
    goals = {
        "fa_acc_ge_uniform": fa.acc_mean >= uniform.acc_mean,
        "fa_within_1pt_of_dense": 100 * (dense.acc_mean - fa.acc_mean) <= 1.0,
        "fa_compute_le_40pct_of_l1 (FLOPs)": fa.train_flops / l1.train_flops <= 0.40,
        "fa_compute_le_40pct_of_l1 (wall time)": fa.train_time_s / l1.train_time_s <= 0.40,
        "fa_within_0.5pt_of_l1": 100 * abs(l1.acc_mean - fa.acc_mean) <= 0.5,
    }
    figures = {"fa_minus_uniform_pt": 100 * (fa.acc_mean - uniform.acc_mean),
               "dense_minus_fa_pt": 100 * (dense.acc_mean - fa.acc_mean),
               "l1_minus_fa_pt": 100 * (l1.acc_mean - fa.acc_mean),
               "fa_over_l1_train_flops": fa.train_flops / l1.train_flops,
               "fa_over_l1_train_time": fa.train_time_s / l1.train_time_s}
    atomic_write_json(results / "compare_fashion_mnist.json", {
        "settings": asdict(settings), "methods": METHODS, "target": 0.5, "metric": "flops", "seeds": 3,
        "summaries": [asdict(s) for s in summaries.values()], "figures": figures, "goals": goals})
    text = "\n".join([
        "# VGG-16 on Fashion-MNIST: every method at a 50 % FLOPs reduction, 3 seeds", "",
        f"Budget: {settings.epochs} epochs on {settings.train_subset} class-balanced training images, "
        f"batch {settings.batch_size}, lr {settings.lr} (cosine), tested on {settings.test_subset} images; l1 fine-tunes "
        "for half the epochs at a tenth of the LR, starting from the same seed's dense run.", "",
        markdown_table(*compare_rows(summaries.values())), "",
        "| figure | value |", "|---|---|", *[f"| {k} | {v:.3f} |" for k, v in figures.items()], "",
        "| goal | met |", "|---|---|", *[f"| {k} | {'yes' if v else 'no'} |" for k, v in goals.items()], ""])
    atomic_write_text(results / "compare_fashion_mnist.md", text)
    print(text)


if __name__ == "__main__":
    main()
