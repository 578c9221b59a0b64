"""Measured latency on this CPU: dense vs FA-0.5, torch eager vs ONNX Runtime, 1 and 2 threads, batch 1.

    python benchmarks/edge_latency.py   # writes benchmarks/results/edge_latency.{json,md}

Goals: measured speed-up ≥ 0.8 × the FLOPs ratio (FA-0.5 → ≥ 1.6×) for VGG-16 and ResNet-50 in at least
one runtime; the pruned ONNX model no slower than the pruned eager model. Also: at equal FLOPs (both
plans stop at a 50 % FLOPs reduction), does the latency-aware mode `la` give a lower measured latency
than `fa`? Every measurement runs in a fresh process (cdprune bench).
"""
import tempfile
from pathlib import Path

import cdprune
from cdprune import models
from cdprune.io import atomic_write_json, atomic_write_text
from cdprune.deploy import bench

MODELS = ["vgg16", "resnet50", "mobilenetv2", "alexnet"]
RUNTIMES = ["torch", "onnxruntime"]
THREADS = [1, 2]
SHAPE = (3, 32, 32)
MIN_TIME_S = 2.0
OUT = Path(__file__).parent / "results"


def main():
    rows, la_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            fa = cdprune.make_plan(models.create(name), SHAPE, "fa", 0.5, seed=0).save(Path(tmp) / f"{name}-fa.json")
            for runtime in RUNTIMES:
                for threads in THREADS:
                    dense = bench(name, runtime=runtime, threads=threads, min_time_s=MIN_TIME_S)
                    pruned = bench(name, plan_path=str(fa), runtime=runtime, threads=threads, min_time_s=MIN_TIME_S)
                    row = {"model": name, "runtime": runtime, "threads": threads,
                           "dense_p50_ms": dense.p50_ms, "fa_p50_ms": pruned.p50_ms,
                           "speedup": dense.p50_ms / pruned.p50_ms, "flops_ratio": dense.flops / pruned.flops,
                           "dense_cpu_percent": dense.cpu_percent, "fa_cpu_percent": pruned.cpu_percent,
                           "dense_peak_rss_mb": dense.peak_rss_bytes / 1e6, "fa_peak_rss_mb": pruned.peak_rss_bytes / 1e6}
                    row["speedup_over_flops_ratio"] = row["speedup"] / row["flops_ratio"]
                    rows.append(row)
                    print(row, flush=True)
        for name in ["vgg16", "resnet50"]:
            net = models.create(name)
            fa = cdprune.make_plan(net, SHAPE, "fa", 0.5, seed=0)
            la = cdprune.make_plan(net, SHAPE, "la", 0.5, target_metric="flops", seed=0)
            paths = {m: p.save(Path(tmp) / f"{name}-{m}-eq.json") for m, p in (("fa", fa), ("la", la))}
            for threads in THREADS:
                timed = {m: bench(name, plan_path=str(path), threads=threads, min_time_s=MIN_TIME_S)
                         for m, path in paths.items()}
                la_row = {"model": name, "threads": threads, "fa_flops": fa.after.flops, "la_flops": la.after.flops,
                          "fa_params": fa.after.params, "la_params": la.after.params,
                          "fa_p50_ms": timed["fa"].p50_ms, "la_p50_ms": timed["la"].p50_ms,
                          "la_faster": timed["la"].p50_ms < timed["fa"].p50_ms}
                la_rows.append(la_row)
                print(la_row, flush=True)

    goals = {}
    for name in ("vgg16", "resnet50"):
        mine = [r for r in rows if r["model"] == name]
        goals[f"{name}: speed-up >= 0.8 x FLOPs ratio in some runtime"] = any(r["speedup_over_flops_ratio"] >= 0.8
                                                                              for r in mine)
    onnx_ok = all(o["fa_p50_ms"] <= t["fa_p50_ms"] for o in rows for t in rows if o["runtime"] == "onnxruntime"
                  and t["runtime"] == "torch" and (o["model"], o["threads"]) == (t["model"], t["threads"]))
    goals["pruned ONNX no slower than pruned eager (every model and thread count)"] = onnx_ok
    atomic_write_json(OUT / "edge_latency.json", {"input_shape": list(SHAPE), "batch": 1, "min_time_s": MIN_TIME_S,
                                                  "rows": rows, "la_vs_fa": la_rows, "goals": goals})
    lines = ["# Measured CPU latency, batch 1 (p50 of ≥ 2 s of runs, fresh process each)", "",
             "| model | runtime | threads | dense ms | FA-0.5 ms | speed-up | FLOPs ratio | speed-up ÷ FLOPs ratio |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['dense_p50_ms']:.2f} | {r['fa_p50_ms']:.2f} | "
              f"{r['speedup']:.2f}× | {r['flops_ratio']:.2f}× | {r['speedup_over_flops_ratio']:.2f} |" for r in rows]
    lines += ["", "## Latency-aware `la` vs `fa` at equal FLOPs (both stop at −50 % FLOPs; torch eager)", "",
              "| model | threads | fa FLOPs | la FLOPs | fa ms | la ms | la faster |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['threads']} | {r['fa_flops'] / 1e6:.1f}M | {r['la_flops'] / 1e6:.1f}M | "
              f"{r['fa_p50_ms']:.2f} | {r['la_p50_ms']:.2f} | {'yes' if r['la_faster'] else 'no'} |" for r in la_rows]
    lines += ["", "| goal | met |", "|---|---|"] + [f"| {k} | {'yes' if v else 'no'} |" for k, v in goals.items()]
    atomic_write_text(OUT / "edge_latency.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
