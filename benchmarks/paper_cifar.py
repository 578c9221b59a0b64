"""The paper's grid at the paper's scale, for whoever has a GPU and the CIFAR files.

    python benchmarks/paper_cifar.py --data-dir ~/data [--device cuda] [--models vgg16,alexnet] ...

For every model × dataset it runs `cdprune.sweep` (dense plus every mode × target, each trained
from scratch: 200 epochs, batch 128, lr 0.1 by default) into OUT/<model>-<dataset>/, which is
resumable: re-running reuses finished runs and continues interrupted ones. It then gathers
every point into RESULTS/paper_cifar.{json,csv,md} and copies each grid cell's trade-off
figures next to them. `--data-dir` must hold `cifar-10-batches-py/` and/or `cifar-100-python/`
(the official Python versions; `--download` fetches them where a network is reachable).
"""
import argparse
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import cdprune
from cdprune.formatting import csv_text, markdown_table
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.measure.latency import cpu_description

HERE = Path(__file__).parent
FIELDS = ["model", "data", "method", "mode", "target", "status", "test_acc", "params", "flops", "memory_bytes",
          "latency_ms", "energy_mj", "cpu_percent", "train_time_s"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/ and cifar-100-python/")
    p.add_argument("--models", default="vgg16,mobilenetv2,alexnet,resnet50")
    p.add_argument("--datasets", default="cifar10,cifar100")
    p.add_argument("--modes", default="pa,fa,ma")
    p.add_argument("--targets", default="0.3,0.5,0.7")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--train-subset", type=int, default=None, help="default: the whole training split")
    p.add_argument("--test-subset", type=int, default=None, help="default: the whole test split")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--bench-time", type=float, default=2.0, help="seconds of timed inference per point")
    p.add_argument("--download", action="store_true")
    p.add_argument("--out", default=str(HERE / "runs" / "paper_cifar"))
    p.add_argument("--results", default=str(HERE / "results"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    split = lambda text: [part for part in text.split(",") if part]
    out, results = Path(args.out), Path(args.results)
    rows, cells = [], []
    for model in split(args.models):
        for data in split(args.datasets):
            settings = cdprune.RunSettings(model=model, data=data, data_dir=args.data_dir, epochs=args.epochs,
                                           batch_size=args.batch_size, lr=args.lr, train_subset=args.train_subset,
                                           test_subset=args.test_subset, device=args.device,
                                           num_workers=args.workers)
            print(f"== {model} on {data}", file=sys.stderr)
            sweep = cdprune.sweep(out / f"{model}-{data}", settings, split(args.modes),
                                  [float(t) for t in split(args.targets)], download=args.download,
                                  bench_time_s=args.bench_time)
            rows += [{"model": model, "data": data, **asdict(p)} for p in sweep.points]
            for png in sorted(Path(sweep.out).glob("tradeoff_*.png")):
                copy = results / f"paper_cifar-{model}-{data}-{png.name}"
                results.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(png, copy)
                cells.append(copy.name)
    settings = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "train_subset", "test_subset", "modes",
                                               "targets", "device")}
    atomic_write_json(results / "paper_cifar.json", {"settings": settings, "cpu": cpu_description(),
                                                     "points": rows, "figures": cells})
    atomic_write_text(results / "paper_cifar.csv", csv_text(FIELDS, [[r[f] for f in FIELDS] for r in rows]))
    atomic_write_text(results / "paper_cifar.md", markdown(rows, settings))
    print(markdown(rows, settings))
    return 0


def markdown(rows: list[dict], settings: dict) -> str:
    table = [[r["model"], r["data"], r["method"], r["status"],
              f"{100 * r['test_acc']:.2f}" if r["test_acc"] is not None else "",
              f"{r['params'] / 1e6:.2f}" if r["params"] else "", f"{r['flops'] / 1e6:.1f}" if r["flops"] else "",
              f"{r['latency_ms']:.2f}" if r["latency_ms"] else ""] for r in rows]
    return "\n".join([
        "# The paper's grid: dense and PA/FA/MA at each target, trained from scratch", "",
        f"{settings['epochs']} epochs, batch {settings['batch_size']}, lr {settings['lr']} (cosine), "
        f"device {settings['device']}; latency is batch 1 on the machine that trained.", "",
        markdown_table(["model", "data", "run", "status", "accuracy %", "params M", "MACs M", "latency ms"], table),
        ""])


if __name__ == "__main__":
    sys.exit(main())
