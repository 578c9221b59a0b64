"""Time profile, plan (each mode, target 0.5) and apply for the four models (median of 5).

    python benchmarks/prune_speed.py   # writes benchmarks/results/prune_speed.json

Goals on a 2-core CPU: ResNet-50 profile < 0.3 s and plan + apply < 2 s; VGG-16 plan + apply < 0.5 s.
"""
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import cdprune
from cdprune import models
from cdprune.storage import atomic_write_json

REPEATS = 5
SHAPE = (3, 32, 32)
GOALS = {"resnet50": {"profile_s": 0.3, "plan_apply_s": 2.0}, "vgg16": {"plan_apply_s": 0.5}}


def median_time(fn, setup=lambda: None):
    times = []
    for _ in range(REPEATS):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    results = {"machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(),
                           "torch": torch.__version__}, "repeats": REPEATS, "models": {}}
    for name in models.names():
        net = models.create(name)
        row = {"profile_s": median_time(lambda _: cdprune.profile(net, SHAPE))}
        for mode in ("pa", "fa", "ma"):
            plan = cdprune.make_plan(net, SHAPE, mode, 0.5)
            row[f"plan_{mode}_s"] = median_time(lambda _: cdprune.make_plan(net, SHAPE, mode, 0.5))
            row[f"apply_{mode}_s"] = median_time(lambda fresh: cdprune.apply_plan(fresh, plan), lambda: models.create(name))
            row[f"plan_apply_{mode}_s"] = row[f"plan_{mode}_s"] + row[f"apply_{mode}_s"]
        row["plan_apply_s"] = max(row[f"plan_apply_{m}_s"] for m in ("pa", "fa", "ma"))  # worst mode
        for key, limit in GOALS.get(name, {}).items():
            row[f"goal_{key}"] = {"limit": limit, "met": row[key] < limit}
        results["models"][name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        print(name, json.dumps(results["models"][name]))
    out = Path(__file__).parent / "results" / "prune_speed.json"
    atomic_write_json(out, results)
    print(f"written {out}")


if __name__ == "__main__":
    main()
