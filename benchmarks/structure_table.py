"""The paper's structure table: achieved reductions of `cdprune prune`, over 20 seeds.

    python benchmarks/structure_table.py   # writes benchmarks/results/structure_table.{json,md}

For VGG-16, ResNet-50, MobileNetV2 and AlexNet at 3×32×32, every mode at targets
0.3 / 0.5 / 0.7: mean ± std over seeds of the params, FLOPs and memory reductions.
"""
import json
from pathlib import Path

import numpy as np

import cdprune
from cdprune import CdpruneError, models
from cdprune.storage import atomic_write_json, atomic_write_text

SEEDS = range(20)
MODELS = ["vgg16", "resnet50", "mobilenetv2", "alexnet"]
MODES = ["pa", "fa", "ma"]
TARGETS = [0.3, 0.5, 0.7]
SHAPE = (3, 32, 32)
OUT = Path(__file__).parent / "results"


def main():
    rows = []
    for name in MODELS:
        net = models.create(name)
        for mode in MODES:
            for target in TARGETS:
                try:
                    plans = [cdprune.make_plan(net, SHAPE, mode, target, seed=s) for s in SEEDS]
                except CdpruneError as exc:
                    rows.append({"model": name, "mode": mode, "target": target, "error": str(exc)})
                    continue
                row = {"model": name, "mode": mode, "target": target, "seeds": len(plans)}
                for metric in ("params", "flops", "memory"):
                    values = np.array([p.reduction[metric] for p in plans])
                    row[metric] = {"mean": float(values.mean()), "std": float(values.std(ddof=1))}
                row["channels_kept"] = float(np.mean([sum(len(u.kept) for u in p.units) /
                                                      sum(u.channels for u in p.units) for p in plans]))
                rows.append(row)
                print(json.dumps(row))
    atomic_write_json(OUT / "structure_table.json", {"input_shape": list(SHAPE), "seeds": len(SEEDS), "rows": rows})
    atomic_write_text(OUT / "structure_table.md", markdown(rows))


def markdown(rows) -> str:
    lines = ["# Achieved reductions of `cdprune prune` (mean ± std over 20 seeds, 3×32×32, 10 classes)", "",
             "Defaults: step 0.1, floor 0.1. Each mode stops at the first draw that reaches its target on its own "
             "metric; the other two metrics follow from where that mode prunes.", "",
             "| model | mode | target | params ↓ | FLOPs ↓ | memory ↓ | channels kept |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['mode']} | {r['target']} | unreachable: {r['error']} | | | |")
            continue
        cell = lambda m: f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}%"
        lines.append(f"| {r['model']} | {r['mode']} | {r['target']} | {cell('params')} | {cell('flops')} | "
                     f"{cell('memory')} | {100 * r['channels_kept']:.1f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
