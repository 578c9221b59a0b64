"""Measured latency on this CPU, batch 1: does the speed-up follow the FLOPs cut on the device?

    python benchmarks/edge_latency.py                 # all three parts; writes benchmarks/results/edge_latency.{json,md}
    python benchmarks/edge_latency.py --only default  # or one part: default | la | int8 | int8-formats (the others keep their
                                                      # rows from the last complete run, if any)
    python benchmarks/edge_latency.py --smoke         # a < 1 minute check of the script (alexnet, short timings,
                                                      # synthetic data); writes to a temporary folder

1. default: every registered model pruned by the default plan (`cdprune prune MODEL`: FA-0.5, seed 0,
   DEFAULT_ROUND_TO) at 3×32×32, timed by `cdprune bench` against its dense model in torch and ONNX
   Runtime with 1 and 2 threads. Goal: speed-up ÷ FLOPs ratio >= 0.9 in ONNX Runtime, 1 thread.
2. la: `la` planned with an ONNX Runtime latency table (1 thread) against `fa`, both stopping at a 50 %
   FLOPs reduction, measured in ONNX Runtime with 1 thread: at equal FLOPs, which runs faster?
3. int8: VGG-16 FA-0.5 trained on Fashion-MNIST with the default job's budget (cdprune.DEFAULT_JOB),
   exported as fp32 and int8 ONNX. Goals: int8 accuracy within 1 point of fp32, file <= 0.3× fp32.
4. int8-formats: the same run quantised four ways (QDQ or QOperator, per-channel or per-tensor
   weights): accuracy, size and ONNX Runtime latency of each, the evidence for INT8_QUANT_FORMAT and
   INT8_PER_CHANNEL (cdprune/measure/quantize.py).

Every timing runs in a fresh process (cdprune bench), except the export's own fp32/int8 comparison.
Training runs are kept in benchmarks/runs/, so a second run reuses them.
"""
import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

import cdprune
from cdprune import models
from cdprune.deploy import bench
from cdprune.storage import atomic_write_json, atomic_write_text
from cdprune.measure.latency import cpu_model_name

MODELS = ["vgg16", "resnet50", "mobilenetv2", "alexnet"]
RUNTIMES = ["torch", "onnxruntime"]
THREADS = [1, 2]
SHAPE = (3, 32, 32)
MIN_TIME_S = 2.0
GOAL_SPEEDUP_PER_FLOPS = 0.9
GOAL_INT8_ACC_POINTS = 1.0
GOAL_INT8_SIZE_RATIO = 0.3
HERE = Path(__file__).parent
RESULTS, RUNS = HERE / "results", HERE / "runs"
PARTS = ("default", "la", "int8", "int8-formats")


def default_plans(names, runtimes, threads_list, min_time_s, folder: Path) -> list[dict]:
    rows = []
    for name in names:
        plan = cdprune.make_plan(models.create(name), SHAPE)  # the defaults of `cdprune prune MODEL`
        path = plan.save(folder / f"{name}-default.json")
        for runtime in runtimes:
            for threads in threads_list:
                r = bench(name, plan_path=str(path), runtime=runtime, threads=threads, min_time_s=min_time_s)
                row = {"model": name, "runtime": runtime, "threads": threads, "round_to": plan.round_to,
                       "dense_p50_ms": r.dense_p50_ms, "p50_ms": r.p50_ms, "speedup": r.speedup,
                       "flops_ratio": r.flops_ratio, "speedup_per_flops": r.speedup_per_flops,
                       "cpu_percent": r.cpu_percent, "peak_rss_mb": r.peak_rss_bytes / 1e6}
                rows.append(row)
                print(row, flush=True)
    return rows


def la_against_fa(names, min_time_s, folder: Path, repeats=None, table_time_s=None, with_dense=True) -> list[dict]:
    rows = []
    timing = {} if repeats is None else {"repeats": repeats, "min_time_s": table_time_s}
    for name in names:
        net = models.create(name)
        start = time.perf_counter()
        half, fractions = cdprune.half_width_copy(net, SHAPE)  # the second calibration point
        table = cdprune.build_latency_table(net, SHAPE, "onnxruntime", 1, calibration_model=half,
                                            calibration_fractions=fractions, **timing)
        built_s = time.perf_counter() - start
        fa = cdprune.make_plan(net, SHAPE, "fa", 0.5, seed=0)
        la = cdprune.make_plan(net, SHAPE, "la", 0.5, target_metric="flops", seed=0, latency_table=table,
                               latency_runtime="onnxruntime")
        timed = {m: bench(name, plan_path=str(p.save(folder / f"{name}-{m}-eq.json")), runtime="onnxruntime",
                          threads=1, min_time_s=min_time_s, against_dense=with_dense and m == "fa")
                 for m, p in (("fa", fa), ("la", la))}
        row = {"model": name, "table_build_s": built_s, "dense_p50_ms": timed["fa"].dense_p50_ms,
               "fa_flops": fa.after.flops, "la_flops": la.after.flops, "fa_params": fa.after.params,
               "la_params": la.after.params, "fa_p50_ms": timed["fa"].p50_ms, "la_p50_ms": timed["la"].p50_ms,
               "la_estimated_ms": la.latency["after_ms"], "la_faster": timed["la"].p50_ms < timed["fa"].p50_ms}
        rows.append(row)
        print(row, flush=True)
    return rows


def int8_against_fp32(settings: cdprune.RunSettings, run_dir: Path, min_time_s: float, calibration: int) -> dict:
    info = settings.dataset_info()
    base = models.create(settings.model, info.num_classes, info.input_shape[0])
    plan = cdprune.make_plan(base, info.input_shape, "fa", 0.5, seed=settings.seed)
    metrics = cdprune.train_run(run_dir, settings, plan, resume=True, progress=False)
    export = cdprune.export_run(run_dir, "onnx", int8=True, calibration_images=calibration, latency_time_s=min_time_s)
    timed = {p: bench(str(run_dir), runtime="onnxruntime", threads=1, min_time_s=min_time_s, int8=p == "int8",
                      calibration_images=calibration, against_dense=False) for p in ("fp32", "int8")}
    c = export.comparison
    row = {"model": settings.model, "data": settings.data, "run_dir": str(run_dir), "torch_test_acc": metrics.test_acc,
           "test_size": c["test_size"], "calibration_images": calibration,
           "fp32_test_acc": c["fp32"]["test_acc"], "int8_test_acc": c["int8"]["test_acc"],
           "acc_points": 100 * (c["int8"]["test_acc"] - c["fp32"]["test_acc"]),
           "fp32_bytes": c["fp32"]["bytes"], "int8_bytes": c["int8"]["bytes"], "size_ratio": c["size_ratio"],
           "fp32_p50_ms": timed["fp32"].p50_ms, "int8_p50_ms": timed["int8"].p50_ms,
           "int8_speedup": timed["fp32"].p50_ms / timed["int8"].p50_ms,
           "export_fp32_p50_ms": c["fp32"]["latency_ms"], "export_int8_p50_ms": c["int8"]["latency_ms"]}
    print(row, flush=True)
    return row


def int8_formats(run_dir: Path, min_time_s: float, calibration: int, folder: Path, rounds: int = 3) -> list[dict]:
    """fp32 and the four static int8 variants of one trained run. Latency is timed in this process, the
    five files in turn for `rounds` rounds (median of the rounds' p50), so all see the same conditions."""
    from cdprune.deploy.export import calibration_set, quantize_int8
    from cdprune.measure.latency import onnx_latency

    fp32 = cdprune.export_run(run_dir, "onnx", out=folder / "fp32.onnx")
    shape = tuple(fp32.metadata["input_shape"])
    images = calibration_set(run_dir, calibration)
    files = {("fp32", None): Path(fp32.path)}
    for fmt in ("QDQ", "QOperator"):
        for per_channel in (True, False):
            files[(fmt, per_channel)] = quantize_int8(fp32.path, folder / f"{fmt}-{per_channel}.onnx", images,
                                                      quant_format=fmt, per_channel=per_channel)
    timings = {key: [] for key in files}
    for _ in range(rounds):
        for key, file in files.items():
            timings[key].append(onnx_latency(str(file), shape, threads=1, min_time_s=min_time_s).p50_ms)
    rows = []
    for (fmt, per_channel), file in files.items():
        row = {"format": fmt, "per_channel": per_channel, "bytes": file.stat().st_size,
               "test_acc": cdprune.eval_onnx(run_dir, file).test_acc, "p50_ms": statistics.median(timings[(fmt, per_channel)]),
               "p50_ms_rounds": timings[(fmt, per_channel)]}
        rows.append(row)
        print(row, flush=True)
    return rows


def goals(result: dict) -> dict:
    met = {}
    for r in result.get("default", []):
        if (r["runtime"], r["threads"]) == ("onnxruntime", 1):
            met[f"{r['model']}: speed-up ÷ FLOPs ratio >= {GOAL_SPEEDUP_PER_FLOPS} (ONNX Runtime, 1 thread)"] = \
                r["speedup_per_flops"] >= GOAL_SPEEDUP_PER_FLOPS
    if result.get("int8"):
        r = result["int8"]
        met[f"int8 accuracy within {GOAL_INT8_ACC_POINTS:g} pt of fp32"] = abs(r["acc_points"]) <= GOAL_INT8_ACC_POINTS
        met[f"int8 file <= {GOAL_INT8_SIZE_RATIO}× fp32"] = r["size_ratio"] <= GOAL_INT8_SIZE_RATIO
    return met


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Measured latency on {m['cpu_model']}, batch 1", "",
             f"torch {m['torch']}, ONNX Runtime {m['onnxruntime']}, {m['platform']}; p50 of ≥ {result['min_time_s']:g} s "
             "of runs in a fresh process (`cdprune bench`), fresh weights unless trained.", ""]
    if result.get("default"):
        lines += ["## The default plan against dense", "",
                  "| model | runtime | threads | dense ms | pruned ms | speed-up | FLOPs ratio | speed-up ÷ FLOPs ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['dense_p50_ms']:.2f} | {r['p50_ms']:.2f} | "
                  f"{r['speedup']:.2f}× | {r['flops_ratio']:.2f}× | {r['speedup_per_flops']:.2f} |"
                  for r in result["default"]]
        lines.append("")
    if result.get("la"):
        lines += ["## `la` (ONNX Runtime table, 1 thread) against `fa` at equal FLOPs, ONNX Runtime 1 thread", "",
                  "| model | dense ms | fa FLOPs | la FLOPs | fa params | la params | fa ms | la ms | la est. ms | "
                  "la faster | table built in |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {_ms(r['dense_p50_ms'])} | {r['fa_flops'] / 1e6:.1f}M | {r['la_flops'] / 1e6:.1f}M | "
                  f"{r['fa_params'] / 1e6:.2f}M | {r['la_params'] / 1e6:.2f}M | {r['fa_p50_ms']:.2f} | "
                  f"{r['la_p50_ms']:.2f} | {r['la_estimated_ms']:.2f} | {'yes' if r['la_faster'] else 'no'} | "
                  f"{r['table_build_s']:.0f} s |" for r in result["la"]]
        lines.append("")
    if result.get("int8"):
        r = result["int8"]
        lines += [f"## int8 against fp32: {r['model']} FA-0.5 on {r['data']} (ONNX Runtime, 1 thread)", "",
                  f"Calibrated on {r['calibration_images']} training images; tested on {r['test_size']} test images "
                  f"(the PyTorch model: {100 * r['torch_test_acc']:.2f} %).", "",
                  "| | fp32 | int8 | int8 / fp32 |", "|---|---|---|---|",
                  f"| test accuracy | {100 * r['fp32_test_acc']:.2f} % | {100 * r['int8_test_acc']:.2f} % | "
                  f"{r['acc_points']:+.2f} pt |",
                  f"| file size | {r['fp32_bytes'] / 1e6:.2f} MB | {r['int8_bytes'] / 1e6:.2f} MB | {r['size_ratio']:.2f}× |",
                  f"| latency p50 | {r['fp32_p50_ms']:.2f} ms | {r['int8_p50_ms']:.2f} ms | "
                  f"{1 / r['int8_speedup']:.2f}× |", ""]
    if result.get("int8_formats"):
        rows = result["int8_formats"]
        lines += ["## int8 variants of the same run (ONNX Runtime, 1 thread, median of the rounds' p50)", "",
                  "| file | weights | test accuracy | size | latency p50 |", "|---|---|---|---|---|"]
        lines += [f"| {r['format']} | {'-' if r['per_channel'] is None else 'per-channel' if r['per_channel'] else 'per-tensor'} | "
                  f"{100 * r['test_acc']:.2f} % | {r['bytes'] / 1e6:.2f} MB | {r['p50_ms']:.2f} ms |" for r in rows]
        lines.append("")
    met = result.get("goals", {})
    lines += ["| goal | met |", "|---|---|"] + [f"| {k} | {'yes' if v else 'no'} |" for k, v in met.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=PARTS, default=None, help="run one part; the others keep their last rows")
    parser.add_argument("--smoke", action="store_true", help="a < 1 minute check; results go to a temporary folder")
    args = parser.parse_args(argv)
    parts = [args.only] if args.only else list(PARTS)
    with tempfile.TemporaryDirectory(prefix="cdprune-edge-") as tmp:
        tmp = Path(tmp)
        out, runs = (tmp / "results", tmp / "runs") if args.smoke else (RESULTS, RUNS)
        previous = out / "edge_latency.json"
        result = json.loads(previous.read_text()) if args.only and previous.exists() else {}
        result.update(machine={"cpu_model": cpu_model_name(), "machine": platform.machine(),
                               "platform": platform.platform(), "torch": torch.__version__,
                               "onnxruntime": onnxruntime.__version__, "cdprune": cdprune.__version__},
                      input_shape=list(SHAPE), batch=1, min_time_s=0.05 if args.smoke else MIN_TIME_S)
        if args.smoke:
            if "default" in parts:
                result["default"] = default_plans(["alexnet"], ["onnxruntime"], [1], 0.05, tmp)
            if "la" in parts:
                result["la"] = la_against_fa(["alexnet"], 0.05, tmp, repeats=2, table_time_s=0.0, with_dense=False)
            tiny = cdprune.RunSettings("alexnet", "synthetic", epochs=1, train_subset=64, test_subset=32, batch_size=32)
            if "int8" in parts:
                result["int8"] = int8_against_fp32(tiny, runs / "alexnet-fa0.5", 0.05, 16)
            if "int8-formats" in parts:
                cdprune.train_run(runs / "alexnet-dense", tiny, None, resume=True, progress=False)
                result["int8_formats"] = int8_formats(runs / "alexnet-dense", 0.05, 16, tmp, rounds=1)
        else:
            if "default" in parts:
                result["default"] = default_plans(MODELS, RUNTIMES, THREADS, MIN_TIME_S, tmp)
            if "la" in parts:
                result["la"] = la_against_fa(MODELS, MIN_TIME_S, tmp)
            if "int8" in parts:
                job = cdprune.DEFAULT_JOB
                settings = cdprune.RunSettings(job["model"], job["data"], epochs=job["epochs"],
                                               batch_size=job["batch_size"], lr=job["lr"],
                                               train_subset=job["train_subset"], test_subset=job["test_subset"])
                result["int8"] = int8_against_fp32(settings, runs / "edge-int8" / "vgg16-fashion-mnist-fa0.5",
                                                   MIN_TIME_S, 256)
            if "int8-formats" in parts:
                run_dir = runs / "edge-int8" / "vgg16-fashion-mnist-fa0.5"
                if not (run_dir / "metrics.json").exists():
                    raise SystemExit(f"{run_dir} has no finished run: run the part int8 first")
                result["int8_formats"] = int8_formats(run_dir, MIN_TIME_S, 256, tmp)
        result["goals"] = goals(result)
        atomic_write_json(out / "edge_latency.json", result)
        text = markdown(result)
        atomic_write_text(out / "edge_latency.md", text)
        print(text)
        print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
