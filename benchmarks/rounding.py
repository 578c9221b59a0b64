"""Channel rounding on this CPU: what `--round-to 1, 4, 8, 16` does to measured latency.

    python benchmarks/rounding.py           # writes benchmarks/results/rounding.{json,md}
    python benchmarks/rounding.py --smoke   # alexnet, round-to 1 and 8, 1 thread, short timings (< 1 min);
                                            # writes to a temporary folder, never over the results

The four registered models, each pruned by an FA-0.5 plan (seed 0) at 3×32×32 with every rounding,
are timed with `cdprune bench` (a fresh process each, batch 1, fresh weights) in torch and ONNX
Runtime with 1 and 2 threads, next to the dense model timed the same way. For each case it gives
the latency, the speed-up over dense and the speed-up ÷ FLOPs ratio (1.0: latency fell as much as
FLOPs did). The summary averages that ratio over the models per rounding, runtime and thread count:
the evidence for DEFAULT_ROUND_TO (cdprune/pruning/sampler.py).
"""
import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import onnxruntime
import torch

import cdprune
from cdprune import models
from cdprune.deploy import bench
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.measure.latency import cpu_model_name

MODELS = ["vgg16", "resnet50", "mobilenetv2", "alexnet"]
ROUNDINGS = [1, 4, 8, 16]
RUNTIMES = ["torch", "onnxruntime"]
THREADS = [1, 2]
SHAPE = (3, 32, 32)
MIN_TIME_S = 2.0
RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    return {"cpu_model": cpu_model_name(), "machine": platform.machine(), "platform": platform.platform(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "cdprune": cdprune.__version__}


def measure(names, roundings, runtimes, threads_list, min_time_s, min_repeats, folder: Path) -> list[dict]:
    rows = []
    for name in names:
        plans = {}
        for r in roundings:
            plan = cdprune.make_plan(models.create(name), SHAPE, "fa", 0.5, seed=0, round_to=r)
            plans[r] = (plan, plan.save(folder / f"{name}-fa0.5-r{r}.json"))
        for runtime in runtimes:
            for threads in threads_list:
                timing = dict(runtime=runtime, threads=threads, min_time_s=min_time_s, min_repeats=min_repeats,
                              against_dense=False)
                dense = bench(name, **timing)
                for r, (plan, path) in plans.items():
                    pruned = bench(name, plan_path=str(path), **timing)
                    speedup, flops_ratio = dense.p50_ms / pruned.p50_ms, dense.flops / pruned.flops
                    row = {"model": name, "round_to": r, "runtime": runtime, "threads": threads,
                           "dense_p50_ms": dense.p50_ms, "p50_ms": pruned.p50_ms, "speedup": speedup,
                           "flops_ratio": flops_ratio, "speedup_per_flops": speedup / flops_ratio,
                           "flops_reduction": plan.reduction["flops"], "narrow_units": list(plan.narrow_units)}
                    rows.append(row)
                    print(row, flush=True)
    return rows


def summary(rows) -> list[dict]:
    """Mean speed-up ÷ FLOPs ratio over the models, per runtime, thread count and rounding."""
    out = []
    keys = sorted({(r["runtime"], r["threads"], r["round_to"]) for r in rows})
    for runtime, threads, rounding in keys:
        mine = [r["speedup_per_flops"] for r in rows
                if (r["runtime"], r["threads"], r["round_to"]) == (runtime, threads, rounding)]
        out.append({"runtime": runtime, "threads": threads, "round_to": rounding,
                    "mean_speedup_per_flops": statistics.mean(mine), "worst_speedup_per_flops": min(mine),
                    "models": len(mine)})
    return out


def markdown(info, rows, means, min_time_s: float) -> str:
    lines = [f"# Channel rounding and measured latency ({info['cpu_model']}, batch 1)", "",
             f"FA-0.5 plans (seed 0) at {'×'.join(map(str, SHAPE))} with each `--round-to`, timed by `cdprune bench` "
             f"(p50 of ≥ {min_time_s:g} s, fresh process, fresh weights); torch {info['torch']}, ONNX Runtime "
             f"{info['onnxruntime']}, {info['platform']}.", "",
             "| model | runtime | threads | round-to | dense ms | pruned ms | speed-up | FLOPs ratio | "
             "speed-up ÷ FLOPs ratio |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['round_to']} | {r['dense_p50_ms']:.2f} | "
              f"{r['p50_ms']:.2f} | {r['speedup']:.2f}× | {r['flops_ratio']:.2f}× | {r['speedup_per_flops']:.2f} |"
              for r in rows]
    lines += ["", "## Mean over the models", "", "| runtime | threads | round-to | mean speed-up ÷ FLOPs ratio | worst |",
              "|---|---|---|---|---|"]
    lines += [f"| {m['runtime']} | {m['threads']} | {m['round_to']} | {m['mean_speedup_per_flops']:.2f} | "
              f"{m['worst_speedup_per_flops']:.2f} |" for m in means]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a < 1 minute check of the script; results go to a "
                        "temporary folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cdprune-rounding-") as tmp:
        if args.smoke:
            rows = measure(["alexnet"], [1, 8], RUNTIMES, [1], 0.05, 5, Path(tmp))
            out = Path(tmp) / "results"
        else:
            rows = measure(MODELS, ROUNDINGS, RUNTIMES, THREADS, MIN_TIME_S, 50, Path(tmp))
            out = RESULTS
        info, means, min_time_s = machine(), summary(rows), 0.05 if args.smoke else MIN_TIME_S
        atomic_write_json(out / "rounding.json", {**info, "input_shape": list(SHAPE), "batch": 1,
                                                  "min_time_s": min_time_s, "default_round_to": cdprune.DEFAULT_ROUND_TO,
                                                  "rows": rows, "summary": means})
        text = markdown(info, rows, means, min_time_s)
        atomic_write_text(out / "rounding.md", text)
        print(text)
        print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
