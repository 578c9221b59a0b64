"""Every export format at fp32 and int8, from the default job's FA-0.5 models: accuracy, size, latency.

    python benchmarks/formats.py [--smoke]

VGG-16 and MobileNetV2 are trained as `cdprune run` trains them (Fashion-MNIST, the default job's
budget; runs in benchmarks/runs/formats, resumable), and each FA-0.5 model is exported to every format
that has a runtime (ONNX, ORT, ExecuTorch, LiteRT) at fp32 and int8. Each file is tested in its own
runtime on the run's test set and timed at batch 1 and 1 thread (p50 and p90 over at least 2 s, in
this process). Results: benchmarks/results/formats.{json,md}.
Goal (issue "Ship to the runtimes edge devices use"): every format's int8 within 1 point of its fp32
accuracy and at most 0.3× its size; the fastest format on this CPU named, with its margin.
"""
import argparse
from pathlib import Path

from cdprune.deploy.formats import FORMATS
from cdprune.deploy.export import export_run
from cdprune.experiment import DEFAULT_JOB, main_job
from cdprune.measure.latency import cpu_description
from cdprune.measure.runtimes import get_runtime
from cdprune.runs import RunSettings
from cdprune.storage import atomic_write_json, atomic_write_text

HERE = Path(__file__).parent
MODELS = ("vgg16", "mobilenetv2")
TIMING_S = 2.0


def job_settings(model: str, smoke: bool) -> RunSettings:
    budget = dict(epochs=1, train_subset=64, test_subset=64) if smoke else \
        dict(epochs=DEFAULT_JOB["epochs"], train_subset=DEFAULT_JOB["train_subset"],
             test_subset=DEFAULT_JOB["test_subset"])
    return RunSettings(model, DEFAULT_JOB["data"], batch_size=DEFAULT_JOB["batch_size"], lr=DEFAULT_JOB["lr"],
                       **budget)


def measure(run_dir: Path, shape) -> list[dict]:
    rows = []
    for fmt in FORMATS.values():
        if fmt.runtime is None or not fmt.eval:
            continue
        for precision in fmt.precisions:
            path = run_dir / "formats" / fmt.file_name(precision)
            result = export_run(run_dir, fmt.name, path, int8=precision == "int8", latency_time_s=0.5)
            timed = get_runtime(fmt.runtime).latency(str(path), shape, threads=1, min_time_s=TIMING_S)
            check = result.check or {}
            rows.append({"format": fmt.name, "precision": precision, "test_acc": check.get("test_acc"),
                         "bytes": path.stat().st_size, "p50_ms": timed.p50_ms, "p90_ms": timed.p90_ms,
                         "runtime": check.get("runtime")})
            print(f"{run_dir.parent.name} {fmt.name} {precision}: acc {check.get('test_acc')}, "
                  f"{path.stat().st_size} B, p50 {timed.p50_ms:.2f} ms, p90 {timed.p90_ms:.2f} ms", flush=True)
    return rows


def goals(rows: list[dict]) -> dict:
    by = {(r["format"], r["precision"]): r for r in rows}
    out = {}
    for (name, precision), r in by.items():
        if precision == "int8" and (name, "fp32") in by:
            fp32 = by[(name, "fp32")]
            out[name] = {"int8_minus_fp32_pt": 100 * (r["test_acc"] - fp32["test_acc"]),
                         "size_ratio": r["bytes"] / fp32["bytes"],
                         "accuracy_goal_met": abs(r["test_acc"] - fp32["test_acc"]) <= 0.01,
                         "size_goal_met": r["bytes"] / fp32["bytes"] <= 0.3}
    fastest = sorted(rows, key=lambda r: r["p50_ms"])
    out["fastest"] = {"format": fastest[0]["format"], "precision": fastest[0]["precision"],
                      "p50_ms": fastest[0]["p50_ms"], "next": f"{fastest[1]['format']} {fastest[1]['precision']}",
                      "next_over_fastest": fastest[1]["p50_ms"] / fastest[0]["p50_ms"]}
    return out


def markdown(results: dict) -> str:
    lines = [f"# Export formats: fp32 and int8 (CPU: {results['cpu']})", "",
             "Batch 1, 1 thread, p50/p90 over at least 2 s in one process; accuracy on the run's test set "
             "in the file's runtime.", ""]
    for model, entry in results["models"].items():
        lines += [f"## {model} FA-0.5", "", "| format | precision | test acc | size | p50 ms | p90 ms |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['format']} | {r['precision']} | {100 * r['test_acc']:.2f} % | {r['bytes'] / 1e6:.2f} MB | "
                  f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} |" for r in entry["rows"]]
        g = entry["goals"]
        lines += ["", "| format | int8 − fp32 | int8 / fp32 size | within 1 pt | ≤ 0.3× size |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {v['int8_minus_fp32_pt']:+.2f} pt | {v['size_ratio']:.2f}× | "
                  f"{'met' if v['accuracy_goal_met'] else 'missed'} | {'met' if v['size_goal_met'] else 'missed'} |"
                  for name, v in g.items() if name != "fastest"]
        f = g["fastest"]
        lines += ["", f"Fastest: {f['format']} {f['precision']} at {f['p50_ms']:.2f} ms p50; the next, {f['next']}, "
                      f"takes {f['next_over_fastest']:.2f}× as long.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a tiny budget, to check the script")
    args = parser.parse_args()
    results = {"cpu": cpu_description(), "models": {}}
    for model in MODELS:
        out = HERE / "runs" / ("formats-smoke" if args.smoke else "formats") / f"{model}-fashion-mnist-fa0.5"
        settings = job_settings(model, args.smoke)
        main_job(out, settings, "fa", 0.5, progress=False, plot=False)
        run_dir = out / "fa-0.5"
        rows = measure(run_dir, (1, 28, 28))
        results["models"][model] = {"rows": rows, "goals": goals(rows)}
    where = HERE / "runs" / "formats-smoke" if args.smoke else HERE / "results"  # smoke figures are not results
    atomic_write_json(where / "formats.json", results)
    atomic_write_text(where / "formats.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
