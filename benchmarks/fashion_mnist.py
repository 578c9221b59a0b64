"""Dense vs FA-0.5 VGG-16 on Fashion-MNIST: the default `cdprune run` budget and a larger one.

    python benchmarks/fashion_mnist.py [--only default|large]

Runs live in benchmarks/runs/ (resumable: re-running continues or reuses them);
results go to benchmarks/results/fashion_mnist.json and .md.
Goal: the FA-0.5 model's test accuracy within 1.0 point of the dense model's at the
same epochs, with a training wall time of at most 60 % of the dense model's.
"""
import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from cdprune.experiment import DEFAULT_JOB, main_job
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.measure.latency import cpu_description
from cdprune.runs import RunSettings

HERE = Path(__file__).parent
CONFIGS = {
    "default": dict(epochs=DEFAULT_JOB["epochs"], train_subset=DEFAULT_JOB["train_subset"],
                    test_subset=DEFAULT_JOB["test_subset"], batch_size=DEFAULT_JOB["batch_size"], lr=DEFAULT_JOB["lr"]),
    "large": dict(epochs=5, train_subset=None, test_subset=None, batch_size=64, lr=0.04),  # lr at batch 128: 0.02 at batch 64
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(CONFIGS))
    args = parser.parse_args()
    results_path = HERE / "results" / "fashion_mnist.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name, config in CONFIGS.items():
        if args.only and name != args.only:
            continue
        settings = RunSettings(model="vgg16", data="fashion-mnist", seed=0, **config)
        dense, pruned = main_job(HERE / "runs" / name, settings, "fa", 0.5).runs
        accuracy_gap = 100 * (dense.test_acc - pruned.test_acc)
        time_ratio = pruned.train_time_s / dense.train_time_s
        results[name] = {
            "settings": asdict(settings), "cpu": cpu_description(), "threads": torch.get_num_threads(),
            "dense": {k: getattr(dense, k) for k in ("test_acc", "params", "flops", "memory_bytes", "latency_ms",
                                                    "train_time_s", "train_size", "test_size")},
            "fa-0.5": {k: getattr(pruned, k) for k in ("test_acc", "params", "flops", "memory_bytes", "latency_ms",
                                                      "train_time_s", "train_size", "test_size")},
            "accuracy_gap_pt": accuracy_gap, "train_time_ratio": time_ratio,
            "goal_accuracy_within_1pt": accuracy_gap <= 1.0, "goal_time_ratio_le_0.6": time_ratio <= 0.6,
        }
        atomic_write_json(results_path, results)
    atomic_write_text(results_path.with_suffix(".md"), markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = ["# VGG-16 on Fashion-MNIST: dense vs FA-0.5 (same budget)", "",
             "| config | CPU | epochs | train images | test images | dense acc | FA-0.5 acc | gap (pt) | "
             "dense train s | FA-0.5 train s | time ratio | goals met |", "|" + "---|" * 12]
    for name, r in results.items():
        s, d, p = r["settings"], r["dense"], r["fa-0.5"]
        met = "yes" if r["goal_accuracy_within_1pt"] and r["goal_time_ratio_le_0.6"] else "no"
        lines.append(f"| {name} | {r.get('cpu', '?')} | {s['epochs']} | {d['train_size']} | {d['test_size']} | "
                     f"{100 * d['test_acc']:.2f} | {100 * p['test_acc']:.2f} | {r['accuracy_gap_pt']:.2f} | {d['train_time_s']:.0f} | "
                     f"{p['train_time_s']:.0f} | {r['train_time_ratio']:.2f} | {met} |")
    lines += ["", "Goal: FA-0.5 within 1.0 point of dense, training wall time at most 60 % of dense's. "
              "2 cores; within a row, batch-1 latency and training times are measured in the same run. "
              "Floating-point results differ slightly between CPU models, so accuracies reproduce exactly "
              "only on the same kind of CPU.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
