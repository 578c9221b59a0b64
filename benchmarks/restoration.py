"""DnCNN on Fashion-MNIST denoising (σ = 25): dense vs FA-0.5, trained from scratch on the same budget,
plus the U-Net at FA-0.5.

    python benchmarks/restoration.py            # the real budget: about 10 minutes on 2 CPU cores
    python benchmarks/restoration.py --smoke    # under a minute, into benchmarks/runs/restoration-smoke

Runs live in benchmarks/runs/restoration/ (resumable: re-running continues or reuses them);
results go to benchmarks/results/restoration.json and .md (the smoke run writes its
results.json and .md into its runs folder, so it never touches the committed results).
Goals: the FA-0.5 DnCNN's test PSNR within 0.3 dB of the dense DnCNN's, with a training wall
time of at most 60 % of the dense one's. The PSNR of the noisy test images themselves is shown
for reference.
"""
import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from cdprune.deploy.worker import device_name
from cdprune.experiment import main_job
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.runs import RunSettings

HERE = Path(__file__).parent
# DnCNN costs about 0.43 GMAC per 28×28 image: 2000 images × 4 epochs keeps dense + FA-0.5 + U-Net
# near 10 minutes on 2 cores.
# lr 0.002 at batch 128 is Adam's 0.001 at batch 32 (square-root scaling).
BUDGET = dict(epochs=4, train_subset=2000, test_subset=1000, batch_size=32, lr=0.002)
SMOKE = dict(epochs=1, train_subset=64, test_subset=32, batch_size=32)
MODELS = {"dncnn": {}, "unet": {}}
SMOKE_MODELS = {"dncnn": {"depth": 5, "width": 16}, "unet": {"width": 8}}
FIELDS = ("score", "ssim", "input_psnr", "params", "flops", "memory_bytes", "latency_ms", "train_time_s",
          "train_size", "test_size")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a tiny budget and small models, to check the script")
    args = parser.parse_args()
    name = "restoration-smoke" if args.smoke else "restoration"
    budget, model_args = (SMOKE, SMOKE_MODELS) if args.smoke else (BUDGET, MODELS)
    results = {"cpu": device_name("cpu"), "threads": torch.get_num_threads(), "noise": 25, "models": {}}
    for model in ("dncnn", "unet"):
        settings = RunSettings(model=model, data="fashion-mnist", model_args=model_args[model], task="denoise",
                               noise=25.0, seed=0, **budget)
        comparison = main_job(HERE / "runs" / name / model, settings, "fa", 0.5)
        dense, pruned = comparison.runs
        gap = dense.score - pruned.score
        ratio = pruned.train_time_s / dense.train_time_s
        results["models"][model] = {
            "settings": asdict(settings),
            "dense": {k: getattr(dense, k) for k in FIELDS}, "fa-0.5": {k: getattr(pruned, k) for k in FIELDS},
            "psnr_gap_db": gap, "train_time_ratio": ratio,
            "goal_psnr_within_0.3db": gap <= 0.3, "goal_time_ratio_le_0.6": ratio <= 0.6,
        }
    path = HERE / "runs" / name / "results.json" if args.smoke else HERE / "results" / f"{name}.json"
    atomic_write_json(path, results)
    atomic_write_text(path.with_suffix(".md"), markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = ["# Denoising Fashion-MNIST (Gaussian σ = 25): dense vs FA-0.5 (same budget)", "",
             f"CPU: {results['cpu']}, {results['threads']} threads.", "",
             "| model | epochs | train images | test images | noisy input PSNR | dense PSNR | FA-0.5 PSNR | gap (dB) | "
             "dense SSIM | FA-0.5 SSIM | FLOPs dense → FA-0.5 | dense train s | FA-0.5 train s | time ratio | goals met |",
             "|" + "---|" * 15]
    for model, r in results["models"].items():
        s, d, p = r["settings"], r["dense"], r["fa-0.5"]
        met = "yes" if r["goal_psnr_within_0.3db"] and r["goal_time_ratio_le_0.6"] else "no"
        lines.append(f"| {model} | {s['epochs']} | {d['train_size']} | {d['test_size']} | {d['input_psnr']:.2f} | "
                     f"{d['score']:.2f} | {p['score']:.2f} | {r['psnr_gap_db']:.2f} | {d['ssim']:.4f} | "
                     f"{p['ssim']:.4f} | {d['flops'] / 1e6:.1f}M → {p['flops'] / 1e6:.1f}M | {d['train_time_s']:.0f} | "
                     f"{p['train_time_s']:.0f} | {r['train_time_ratio']:.2f} | {met} |")
    lines += ["", "Goals: FA-0.5 within 0.3 dB of dense's test PSNR, training wall time at most 60 % of dense's. "
              "Adam, peak lr 0.001 at batch 32 (0.002 at batch 128), warm-up then cosine, MSE loss; PSNR and SSIM "
              "per test image on the [0, 1] scale, "
              "averaged. The noisy input PSNR scores the noisy test images themselves. Within a row, training times "
              "are measured in the same run; they depend on the CPU.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
