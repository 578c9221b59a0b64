"""A user's own model and images: dense vs FA-0.5 of a small CNN trained from a PNG class folder.

    python benchmarks/own_data.py [--smoke]

The folder is Fashion-MNIST exported as PNGs in the common train/ + val/ class-folder
layout (benchmarks/runs/fashion-png, made once), and the model is the 30-line user network
tests/usermodels/edgenet.py, reached by reference as a user would. Runs live in
benchmarks/runs/own-data (resumable); results go to benchmarks/results/own_data.{json,md}.
"""
import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import cdprune
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.measure.latency import cpu_description

HERE = Path(__file__).parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
MODEL = str(HERE.parent / "tests" / "usermodels" / "edgenet.py") + ":EdgeNet"
CONFIG = dict(per_class_train=600, per_class_test=200, epochs=6, batch_size=64, lr=0.1)  # lr at batch 128: 0.05 at batch 64
SMOKE = dict(per_class_train=12, per_class_test=4, epochs=1, batch_size=16, lr=0.05)


def export_pngs(root: Path, per_class_train: int, per_class_test: int) -> Path:
    """Fashion-MNIST as root/train/<class>/*.png and root/val/<class>/*.png (written once, then reused)."""
    if (root / "val").is_dir():
        return root
    for split, prefix, per_class in (("train", "train", per_class_train), ("val", "t10k", per_class_test)):
        images = np.frombuffer(gzip.decompress((FASHION / f"{prefix}-images-idx3-ubyte.gz").read_bytes()),
                               np.uint8, offset=16).reshape(-1, 28, 28)
        labels = np.frombuffer(gzip.decompress((FASHION / f"{prefix}-labels-idx1-ubyte.gz").read_bytes()),
                               np.uint8, offset=8)
        for label, name in enumerate(CLASSES):
            folder = root / "partial" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, pixels in enumerate(images[labels == label][:per_class]):
                Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    for split in ("train", "val"):  # the folder appears whole or not at all
        (root / "partial" / split).rename(root / split)
    (root / "partial").rmdir()
    return root


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a few images and one epoch: checks the script only")
    args = parser.parse_args()
    config = SMOKE if args.smoke else CONFIG
    name = "smoke" if args.smoke else "default"
    folder = export_pngs(HERE / "runs" / f"fashion-png-{name}", config["per_class_train"], config["per_class_test"])
    settings = cdprune.RunSettings(model=MODEL, data=str(folder), input_shape=[1, 28, 28], epochs=config["epochs"],
                                   batch_size=config["batch_size"], lr=config["lr"])
    dense, pruned = cdprune.main_job(HERE / "runs" / f"own-data-{name}", settings, "fa", 0.5).runs
    keys = ("test_acc", "params", "flops", "memory_bytes", "latency_ms", "train_time_s", "train_size", "test_size")
    result = {"config": config, "model": "tests/usermodels/edgenet.py:EdgeNet", "data": "Fashion-MNIST as PNG folders",
              "cpu": cpu_description(), "threads": torch.get_num_threads(),
              "dense": {k: getattr(dense, k) for k in keys}, "fa-0.5": {k: getattr(pruned, k) for k in keys}}
    if args.smoke:
        print(markdown(result))
        return
    atomic_write_json(HERE / "results" / "own_data.json", result)
    atomic_write_text(HERE / "results" / "own_data.md", markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    d, p = r["dense"], r["fa-0.5"]
    c = r["config"]
    row = lambda label, key, fmt: f"| {label} | {fmt(d[key])} | {fmt(p[key])} | {p[key] / d[key]:.2f}× |"
    return "\n".join([
        "# Your own model and images: dense vs FA-0.5", "",
        f"`{r['model']}` trained from scratch on {r['data']} ({d['train_size']} training PNGs, {d['test_size']} "
        f"test PNGs, class-folder layout), {c['epochs']} epochs, batch {c['batch_size']}, lr {c['lr']}; "
        f"CPU: {r['cpu']}, {r['threads']} threads. Latency: batch 1, median.", "",
        "| | dense | FA-0.5 | FA-0.5 / dense |", "|---|---|---|---|",
        f"| test accuracy | {100 * d['test_acc']:.2f} % | {100 * p['test_acc']:.2f} % | "
        f"{100 * (p['test_acc'] - d['test_acc']):+.2f} pt |",
        row("params", "params", lambda v: f"{v / 1e3:.1f} K"),
        row("FLOPs (MACs)", "flops", lambda v: f"{v / 1e6:.2f} M"),
        row("CPU latency", "latency_ms", lambda v: f"{v:.3f} ms"),
        row("training time", "train_time_s", lambda v: f"{v:.0f} s"), ""])


if __name__ == "__main__":
    main()
