"""Does the budget hold for what ships? Latency budgets planned in the shipped precision, checked on the file.

    python benchmarks/device_budget.py                  # both parts; writes benchmarks/results/device_budget.{json,md}
    python benchmarks/device_budget.py --only estimate  # one part: estimate | train (the other keeps its last rows)
    python benchmarks/device_budget.py --only train --models mobilenetv2,resnet50   # train some models (resumes)
    python benchmarks/device_budget.py --smoke          # a short check of the script; writes under benchmarks/runs only

Every time is ONNX Runtime, batch 1, 1 thread, by the timing protocol of measure/timing.py, in a fresh
process as `cdprune bench` times a file (deploy.bench.file_timing). Models: VGG-16, ResNet-50, MobileNetV2, AlexNet at 1×28×28 with 10 classes, and the user
model tests/usermodels/edgenet.py:EdgeNet reached by reference.

1. estimate: for each model and each precision (fp32, int8), a per-layer table is measured
   (`cdprune latency-table --runtime onnxruntime --precision P --threads 1`). The budget is half the
   dense model's measured p50 in that precision. `la`, `fa` and `pa` plan to that budget with the
   table; each pruned model (untrained: latency does not depend on the weights) is exported in the
   precision and timed. Reported: the plan's estimate against the measured p50 (goal: within 10 %),
   pass/fail against the budget. Also the default plan (FA-0.5 of FLOPs) of the registered models:
   measured speed-up over the FLOPs cut (goal >= 0.9), and for VGG-16 the layers that hold it back.
2. train: the same int8 budgets in `cdprune compare --budget latency=… --precision int8` on
   Fashion-MNIST: dense, la, fa, pa and tp-magnitude trained with the same settings, each pruned model
   exported int8 and timed; accuracy, measured p50/p90, pass/fail.
"""
import argparse
import json
import time
from pathlib import Path

import cdprune
from cdprune import models
from cdprune.measure.latency import cpu_description
from cdprune.measure.layer_latency import build_latency_table
from cdprune.deploy.bench import file_latency, file_timing
from cdprune.measure.runtimes import deployed_onnx
from cdprune.storage import atomic_write_json, atomic_write_text

HERE = Path(__file__).parent
EDGENET = str(HERE.parent / "tests" / "usermodels" / "edgenet.py") + ":EdgeNet"
MODELS = {"vgg16": "vgg16", "resnet50": "resnet50", "mobilenetv2": "mobilenetv2", "alexnet": "alexnet",
          "edgenet": EDGENET}
SHAPE = (1, 28, 28)
PRECISIONS = ("fp32", "int8")
PLANNED = ("la", "fa", "pa")
BUDGET_FRACTION = 0.5
# A model whose dense time is mostly the runtime's fixed cost per call cannot halve it; such a model gets the
# next fraction that its plans can reach, and the table says which fraction it got.
FALLBACK_FRACTIONS = (0.5, 0.65, 0.8)
GOAL_ESTIMATE = 0.10
GOAL_SPEEDUP_PER_FLOPS = 0.9
# Training per model: images, epochs, batch. The heavier models get fewer images so the part fits in
# about half an hour on 2 cores; the report says whether each dense model converged.
TRAIN = {"alexnet": (10000, 6, 64), "edgenet": (10000, 6, 64), "mobilenetv2": (5000, 4, 64),
         "vgg16": (5000, 4, 64), "resnet50": (5000, 4, 64)}
AUTOCAST = "bf16"  # the forward pass in bf16 (1.8–2.2× faster on VGG-16, ResNet-50 and AlexNet, train_speed.md)
SMOKE_TRAIN = (256, 1, 64)
TRAIN_ORDER = ("vgg16", "alexnet", "edgenet", "mobilenetv2", "resnet50")  # the heaviest last


def build(name: str):
    return models.create(MODELS[name], num_classes=10, in_channels=SHAPE[0])


TABLES = HERE / "runs" / "device-budget-tables"


def table_for(name: str, precision: str, table_kw: dict):
    """The model's table in `precision`, measured once and kept in TABLES: both parts, and a second run that
    resumes the training part, plan with the same table (delete the folder to measure again)."""
    path = TABLES / f"{name}-{precision}{'-smoke' if table_kw else ''}.json"
    if path.exists():
        return cdprune.LatencyTable.load(path)
    half, fractions = cdprune.half_width_copy(build(name), SHAPE)  # the second calibration point
    table = build_latency_table(build(name), SHAPE, "onnxruntime", threads=1, precision=precision,
                                calibration_model=half, calibration_fractions=fractions, **table_kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.save(path)
    return cdprune.LatencyTable.load(path)


class Timing:
    """p50_ms, p90_ms and noisy of a file timed as bench times a shipped one (a fresh process)."""

    def __init__(self, raw: dict):
        self.p50_ms, self.p90_ms, self.noisy = raw["p50_ms"], raw["p90_ms"], raw["noisy"]


def timed(module, precision: str, min_time_s: float) -> Timing:
    return Timing(file_timing(deployed_onnx(module, SHAPE, precision), SHAPE, 1, min_time_s))


def estimate_part(names, min_time_s: float, table_kw: dict) -> dict:
    rows, tables, speedups = [], {}, []
    for name in names:
        for precision in PRECISIONS:
            start = time.time()
            table = tables[(name, precision)] = table_for(name, precision, table_kw)
            dense = timed(build(name), precision, min_time_s)
            fraction = reachable_fraction(name, table, precision, dense.p50_ms) or BUDGET_FRACTION
            budget = fraction * dense.p50_ms
            print(f"{name} {precision}: table in {time.time() - start:.0f} s, dense p50 {dense.p50_ms:.3f} ms "
                  f"(table {table.network_ms:.3f}), budget {budget:.3f} ms", flush=True)
            limits = cdprune.Budget({"latency": budget}, table=table, runtime="onnxruntime", precision=precision,
                                    timer=file_latency)
            for mode in PLANNED:
                model = build(name)
                try:  # as run, compare and sweep plan: with the default margin, each plan timed here and made again
                    plan = cdprune.fit_plan(limits, model, SHAPE, lambda margin: cdprune.make_plan(
                        model, SHAPE, mode, None, **limits.plan_options(margin)))
                except cdprune.CdpruneError as exc:
                    rows.append({"model": name, "precision": precision, "mode": mode, "budget_ms": budget,
                                 "status": f"unreachable: {exc.problem}"})
                    continue
                measured = timed(cdprune.apply_plan(model, plan), precision, min_time_s)
                estimate, fitted = plan.latency["after_ms"], plan.latency.get("fitted", {})
                rows.append({"model": name, "precision": precision, "mode": mode, "budget_ms": budget,
                             "fraction": fraction, "status": "ok", "dense_p50_ms": dense.p50_ms, "dense_table_ms": table.network_ms,
                             "estimate_ms": estimate, "p50_ms": measured.p50_ms, "p90_ms": measured.p90_ms,
                             "noisy": measured.noisy, "error": estimate / measured.p50_ms - 1,
                             "passed": measured.p50_ms <= budget, "flops_ratio": plan.after.flops / plan.before.flops,
                             "margin": plan.latency.get("margin", 0.0), "plans_timed": fitted.get("plans"),
                             "fitted_p50_ms": fitted.get("p50_ms")})
                print(f"  {mode}: estimate {estimate:.3f} ms, measured {measured.p50_ms:.3f} ms "
                      f"(p90 {measured.p90_ms:.3f}), {'pass' if measured.p50_ms <= budget else 'FAIL'}", flush=True)
        if name in models.names():
            speedups += default_speedup(name, tables[(name, "fp32")], min_time_s)
    return {"rows": rows, "speedups": speedups}


def reachable_fraction(name: str, table, precision: str, dense_ms: float) -> float | None:
    """The first of FALLBACK_FRACTIONS of the dense p50 that every planned mode can reach with `table` (None: none)."""
    for fraction in FALLBACK_FRACTIONS:
        try:
            limits = cdprune.Budget({"latency": fraction * dense_ms}, table=table, runtime="onnxruntime",
                                    precision=precision)
            for mode in PLANNED:
                cdprune.make_plan(build(name), SHAPE, mode, None, **limits.plan_options())
            return fraction
        except cdprune.CdpruneError:
            continue
    return None


def default_speedup(name: str, table, min_time_s: float) -> list[dict]:
    """The default plan (FA-0.5) in fp32: measured speed-up over the FLOPs cut, and per layer (from the table)
    how far each layer's time falls against its FLOPs."""
    model = build(name)
    plan = cdprune.make_plan(model, SHAPE, "fa", 0.5)
    dense = timed(build(name), "fp32", min_time_s)
    pruned_model = cdprune.apply_plan(model, plan)
    pruned = timed(pruned_model, "fp32", min_time_s)
    speedup, flops_ratio = dense.p50_ms / pruned.p50_ms, plan.before.flops / plan.after.flops
    layers = []
    before = {lc.name: lc for lc in cdprune.profile(build(name), SHAPE).layers}
    after = {lc.name: lc for lc in cdprune.profile(pruned_model, SHAPE).layers}
    for layer, lc in before.items():
        if layer not in table.grids or layer not in after:
            continue
        a = after[layer]
        fin = a.in_channels / lc.in_channels if lc.in_channels else 1.0
        fout = a.out_channels / lc.out_channels if lc.out_channels else 1.0
        full, cut = table.layer_ms(layer, 1.0, 1.0), table.layer_ms(layer, fin, fout)
        layers.append({"layer": layer, "dense_ms": full, "pruned_ms": cut, "flops_kept": a.flops / lc.flops,
                       "time_kept": cut / full if full else 1.0, "excess_ms": cut - full * a.flops / lc.flops})
    layers.sort(key=lambda r: -r["excess_ms"])
    return [{"model": name, "dense_p50_ms": dense.p50_ms, "p50_ms": pruned.p50_ms, "speedup": speedup,
             "flops_ratio": flops_ratio, "speedup_per_flops": speedup / flops_ratio,
             "table_overhead_ms": table.network_ms - table.layer_sum_ms, "table_layer_sum_ms": table.layer_sum_ms,
             "layers": layers[:6]}]


def train_part(names, out: Path, smoke: bool, save) -> list[dict]:
    """Trains model after model; `save(rows)` after each, so an interrupted run keeps the models it finished."""
    rows = []
    for name in names:
        images, epochs, batch = SMOKE_TRAIN if smoke else TRAIN[name]
        table = table_for(name, "int8", {"repeats": 3, "min_time_s": 0.005} if smoke else {})
        # The budget is a fraction of the dense p50 the table recorded; a folder that was started keeps the budget
        # it was started with (compare.json), so that its finished runs' plans still match when the part resumes.
        dense_ms = table.network_ms
        fraction = reachable_fraction(name, table, "int8", dense_ms)
        if fraction is None:
            print(f"{name}: no plan reaches {FALLBACK_FRACTIONS[-1]:.0%} of the dense int8 p50; not trained", flush=True)
            rows.append({"model": name, "method": "-", "status": "unreachable", "dense_int8_p50_ms": dense_ms})
            save(rows)
            continue
        started = out / name / "compare.json"
        limit = json.loads(started.read_text())["budget"]["limits"]["latency"] if started.exists() else \
            fraction * dense_ms
        fraction = limit / dense_ms
        budget = cdprune.methods.Budget({"latency": limit}, table=table, runtime="onnxruntime", precision="int8")
        settings = cdprune.RunSettings(MODELS[name], "fashion-mnist", input_shape=list(SHAPE), epochs=epochs,
                                       batch_size=batch, train_subset=images, test_subset=500 if smoke else 2000,
                                       autocast=AUTOCAST)
        start = time.time()
        methods = ["dense", "la", "fa", "pa", "tp-magnitude"]
        try:
            result = cdprune.compare(out / name, settings, methods, None, budget=budget, progress=False)
        except cdprune.CdpruneError as exc:  # a baseline that cannot reach the budget: the others still count
            print(f"{name}: {exc}; again without tp-magnitude", flush=True)
            result = cdprune.compare(out / name, settings, methods[:-1], None, budget=budget, progress=False)
        print(f"{name}: compare in {time.time() - start:.0f} s", flush=True)
        for s in result.summaries:
            check = (s.budget_checks or [None])[0]
            row = (check or {}).get("rows", [{}])[0] if check else {}
            plan_file = out / name / "seed-0" / s.method / "plan.json"
            latency = cdprune.PruningPlan.load(plan_file).latency if plan_file.exists() else {}
            rows.append({"model": name, "method": s.method, "budget_ms": limit, "fraction": fraction,
                         "dense_int8_p50_ms": dense_ms,
                         "test_acc": s.score_mean, "converged": None if s.last_epoch_gain_max is None else not s.not_converged,
                         "last_epoch_gain": s.last_epoch_gain_max,
                         "estimate_ms": row.get("planned"), "p50_ms": row.get("measured"),
                         "p90_ms": row.get("measured_p90"), "passed": row.get("passed"),
                         "train_time_s": s.train_time_s, "images": images, "epochs": epochs, "batch": batch,
                         "autocast": AUTOCAST, "margin": latency.get("margin"),
                         "plans_timed": latency.get("fitted", {}).get("plans"),
                         "fitted_p50_ms": latency.get("fitted", {}).get("p50_ms")})
        save(rows)
    return rows


def goals(result: dict) -> dict:
    est = [r for r in result.get("estimate", {}).get("rows", []) if r["status"] == "ok"]
    trained = [r for r in result.get("train", []) if r["method"] not in ("dense", "-")]
    la_beats = []
    for name in {r["model"] for r in trained}:
        acc = {r["method"]: r["test_acc"] for r in trained if r["model"] == name}
        if "la" in acc and "fa" in acc:
            la_beats.append(acc["la"] >= acc["fa"])
    return {
        "every shipped model meets its budget": all(r["passed"] for r in est + trained if r.get("passed") is not None),
        "la's estimate within 10 %": all(abs(r["error"]) <= GOAL_ESTIMATE for r in est if r["mode"] == "la"),
        "la's accuracy >= fa's on at least 3 of 5 models": sum(la_beats) >= 3 if la_beats else None,
        "default plan speed-up / FLOPs cut >= 0.9": all(r["speedup_per_flops"] >= GOAL_SPEEDUP_PER_FLOPS
                                                        for r in result.get("estimate", {}).get("speedups", [])),
    }


def markdown(result: dict) -> str:
    lines = [f"# The budget on the device (CPU: {result['cpu']})", "",
             "ONNX Runtime, batch 1, 1 thread; p50/p90 by the timing protocol (median's 95 % interval within ±3 %, "
             "or a time limit). Budget: half the dense model's measured p50 in the shipped precision. Every plan is "
             "made as `run`, `compare` and `sweep` make it: to the limit less its margin (default "
             f"{cdprune.DEFAULT_MARGIN:g}), then timed here before training and made again tighter while its file "
             "misses that aim (`fit_plan`; 'plans' = how many were timed, 'before training' = the last one's p50).", ""]
    est = result.get("estimate")
    if est:
        lines += ["## Estimate against measurement (untrained weights)", "",
                  "| model | precision | mode | budget (of dense) | margin | plans | before training | estimate | "
                  "measured p50 | p90 | error | budget |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in est["rows"]:
            if r["status"] != "ok":
                lines.append(f"| {r['model']} | {r['precision']} | {r['mode']} | {r['budget_ms']:.3f} ms | "
                             f"{r['status']} | | | | | | | |")
                continue
            lines.append(f"| {r['model']} | {r['precision']} | {r['mode']} | {r['budget_ms']:.3f} ms "
                         f"({r['fraction']:.0%}) | {_margin(r)} | {r.get('plans_timed') or '-'} | {_ms(r.get('fitted_p50_ms'))} | "
                         f"{r['estimate_ms']:.3f} ms | {r['p50_ms']:.3f} ms{' (noisy)' if r['noisy'] else ''} | "
                         f"{r['p90_ms']:.3f} ms | {r['error']:+.1%} | {'pass' if r['passed'] else 'FAIL'} |")
        lines += ["", "## Default plan (FA-0.5): speed-up against the FLOPs cut, fp32", "",
                  "| model | dense p50 | FA-0.5 p50 | speed-up | FLOPs cut | speed-up / FLOPs | table: time outside layers |",
                  "|---|---|---|---|---|---|---|"]
        for r in est["speedups"]:
            lines.append(f"| {r['model']} | {r['dense_p50_ms']:.3f} ms | {r['p50_ms']:.3f} ms | {r['speedup']:.2f}× | "
                         f"{r['flops_ratio']:.2f}× | {r['speedup_per_flops']:.2f} | "
                         f"{r['table_overhead_ms']:.3f} ms of {r['table_layer_sum_ms'] + r['table_overhead_ms']:.3f} |")
        for r in est["speedups"]:
            lines += ["", f"{r['model']}: the layers whose time falls least against their FLOPs (from the fp32 table)",
                      "", "| layer | dense ms | pruned ms | FLOPs kept | time kept | time above FLOPs |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {x['layer']} | {x['dense_ms']:.3f} | {x['pruned_ms']:.3f} | {x['flops_kept']:.2f} | "
                      f"{x['time_kept']:.2f} | {x['excess_ms']:+.3f} ms |" for x in r["layers"]]
    if result.get("train"):
        lines += ["", f"## Trained to the int8 budget (Fashion-MNIST; forward pass in {AUTOCAST} autocast), exported int8, measured", "",
                  "| model | method | images × epochs | test acc | converged | margin | plans | before training | "
                  "estimate | measured p50 | p90 | budget |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["train"]:
            if r.get("status") == "unreachable":
                lines.append(f"| {r['model']} | - | - | - | - | no plan reaches {FALLBACK_FRACTIONS[-1]:.0%} of the dense "
                             f"int8 p50 ({r['dense_int8_p50_ms']:.3f} ms) | | | | | | |")
                continue
            est_ms = "-" if r["estimate_ms"] is None else f"{r['estimate_ms']:.3f} ms"
            p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.3f} ms"
            p90 = "-" if r["p90_ms"] is None else f"{r['p90_ms']:.3f} ms"
            verdict = "-" if r["passed"] is None else ("pass" if r["passed"] else "FAIL")
            lines.append(f"| {r['model']} | {r['method']} | {r['images']} × {r['epochs']} | {r['test_acc']:.2%} | "
                         f"{'-' if r['converged'] is None else ('yes' if r['converged'] else 'no')} | {_margin(r)} | "
                         f"{r.get('plans_timed') or '-'} | {_ms(r.get('fitted_p50_ms'))} | {est_ms} | {p50} | "
                         f"{p90} | {verdict} (≤ {r['budget_ms']:.3f} ms, {r['fraction']:.0%} of dense) |")
    lines += ["", "| goal | met |", "|---|---|"]
    lines += [f"| {k} | {'-' if v is None else ('met' if v else 'missed')} |" for k, v in result["goals"].items()]
    return "\n".join(lines) + "\n"


def _margin(row: dict) -> str:
    return "-" if row.get("margin") is None else f"{row['margin']:.0%}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("estimate", "train"), default=None)
    parser.add_argument("--smoke", action="store_true", help="alexnet and edgenet, short timings")
    parser.add_argument("--models", default=None, help="comma-separated models to train (default all, heaviest last)")
    args = parser.parse_args()
    names = ["alexnet", "edgenet"] if args.smoke else list(MODELS)
    path = HERE / ("runs/device_budget-smoke.json" if args.smoke else "results/device_budget.json")
    result = json.loads(path.read_text()) if path.exists() and args.only else {}
    result["cpu"] = cpu_description()

    def save() -> None:  # after each part, so an interrupted run keeps what it measured
        result["goals"] = goals(result)
        atomic_write_json(path, result)
        atomic_write_text(path.with_suffix(".md"), markdown(result))

    if args.only in (None, "estimate"):
        table_kw = {"repeats": 3, "min_time_s": 0.005} if args.smoke else {}
        result["estimate"] = estimate_part(names, 0.2 if args.smoke else 2.0, table_kw)
        save()
    if args.only in (None, "train"):
        order = args.models.split(",") if args.models else TRAIN_ORDER
        kept = [r for r in result.get("train", []) if r["model"] not in order]  # models this run does not train

        def save_rows(rows):
            result["train"] = kept + rows
            save()

        train_part(order if not args.smoke else names,
                   HERE / "runs" / ("device-budget-smoke" if args.smoke else "device-budget"), args.smoke, save_rows)
    print(markdown(result))


if __name__ == "__main__":
    main()
