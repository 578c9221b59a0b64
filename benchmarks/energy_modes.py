"""Energy-aware pruning against FLOPs- and parameter-aware: VGG-16 and MobileNetV2 at −50 % estimated energy.

    python benchmarks/energy_modes.py            # the real configuration: run it on an otherwise idle machine
    python benchmarks/energy_modes.py --smoke    # under a minute, synthetic data: checks the script

Every mode stops at the same 50 % reduction of the estimated energy (45 nm default coefficients): `ea`
draws units by their energy share, `fa` and `pa` by their FLOPs and parameter shares. Each model and
the dense baseline train on Fashion-MNIST at the budget of `cdprune run` (cdprune.DEFAULT_JOB), and
each trained run is measured in a fresh process with `cdprune bench` (latency; energy too where a
meter answers). Recorded per model:

- params, FLOPs, memory and estimated energy reached, measured latency, test accuracy, and the energy
  per accuracy point (mJ per percentage point): which mode is cheapest;
- the breakdown of the estimated energy at batch 1 into MACs, weight bytes and activation bytes
  (inputs read + outputs written), for the dense model and every pruned one;
- planning alone over `SEEDS` seeds: the mean reductions of each mode and how far `ea`'s per-unit
  removals are from `pa`'s and from `fa`'s, to show whether `ea` differs from `pa` in practice.

Runs live in benchmarks/runs/energy_modes/ (resumable: re-running continues or reuses them); results go to
benchmarks/results/energy_modes.{json,md}, rewritten atomically after each model.
"""
import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import cdprune
from cdprune import models
from cdprune.deploy.worker import device_name
from cdprune.experiment import DEFAULT_JOB
from cdprune.formatting import human_bytes, human_count, markdown_table
from cdprune.storage import atomic_write_json, atomic_write_text

HERE = Path(__file__).parent
MODELS = ["vgg16", "mobilenetv2"]
MODES = ["ea", "fa", "pa"]
TARGET = 0.5  # of the estimated energy, for every mode
SEEDS = 20  # plans per mode for the structural comparison (planning only, no training)
BENCH = dict(min_time_s=2.0, min_repeats=50)
BUDGET = {k: DEFAULT_JOB[k] for k in ("epochs", "train_subset", "test_subset", "batch_size", "lr")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run to check the script")
    args = parser.parse_args()
    if args.smoke:  # every step of the real run, on the real models, with the least work that still does it
        data, budget = "synthetic", dict(epochs=1, train_subset=64, test_subset=32, batch_size=32, lr=0.08)
        seeds, bench_settings = 1, dict(min_time_s=0, min_repeats=3, threads=1)
        torch.set_num_threads(1)  # tiny batches gain nothing from more threads, and a shared machine loses by them
        root = Path("/tmp/cdprune-energy-modes-smoke")
        results_dir = root / "results"
    else:
        data, budget, seeds, bench_settings = "fashion-mnist", BUDGET, SEEDS, BENCH
        root, results_dir = HERE / "runs" / "energy_modes", HERE / "results"
    results = {"cpu": device_name("cpu"), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "target": TARGET, "metric": "energy", "data": data, "budget": budget, "seeds_planned": seeds,
               "energy_model": cdprune.DEFAULT_ENERGY_MODEL.to_dict(), "models": {}}
    for name in MODELS:
        results["models"][name] = measure_model(name, data, budget, seeds, bench_settings, root / name)
        atomic_write_json(results_dir / "energy_modes.json", results)
        atomic_write_text(results_dir / "energy_modes.md", markdown(results))
    print(markdown(results))


def measure_model(name: str, data: str, budget: dict, seeds: int, bench_settings: dict, root: Path) -> dict:
    settings = cdprune.RunSettings(name, data, seed=0, **budget)
    shape = tuple(settings.dataset_info().input_shape)
    methods = ["dense"] + MODES
    summaries = {s.method: s for s in cdprune.compare(root, settings, methods, TARGET, metric="energy").summaries}
    runs, breakdown = {}, {}
    for method in methods:
        run_dir = root / f"seed-{settings.seed}" / method
        plan = cdprune.PruningPlan.load(run_dir / "plan.json") if method != "dense" else None
        model = models.create(name, settings.dataset_info().num_classes, shape[0])
        if plan is not None:
            model = cdprune.apply_plan(model, plan)
        prof = cdprune.profile(model, shape, cdprune.DEFAULT_ENERGY_MODEL)
        measured = cdprune.bench(str(run_dir), **bench_settings)
        s = summaries[method]
        runs[method] = {
            "test_acc": s.acc_mean, "params": s.params, "flops": s.flops, "memory_bytes": s.memory_bytes,
            "energy_mj": prof.energy_mj, "latency_p50_ms": measured.p50_ms, "bench_energy": measured.energy,
            "mj_per_accuracy_point": prof.energy_mj / (100 * s.acc_mean) if s.acc_mean else None,
            "train_time_s": s.train_time_s}
        breakdown[method] = energy_breakdown(prof)
    dense_mj = runs["dense"]["energy_mj"]
    for r in runs.values():
        r["energy_reduction"] = 1 - r["energy_mj"] / dense_mj
    priced = {m: r["mj_per_accuracy_point"] for m, r in runs.items() if r["mj_per_accuracy_point"] is not None}
    return {"input_shape": list(shape), "runs": runs, "breakdown": breakdown,
            "cheapest_mj_per_accuracy_point": min(priced, key=priced.get) if priced else None,
            "structure": structure(name, settings.dataset_info().num_classes, shape, seeds)}


def energy_breakdown(prof) -> dict:
    """Shares of the estimated energy from MACs, weight bytes and activation bytes (inputs read + outputs written)."""
    model = prof.energy_model
    weight_bytes = sum(layer.bytes_moved - layer.input_bytes - layer.memory_bytes for layer in prof.layers)
    activation_bytes = sum(layer.input_bytes + layer.memory_bytes for layer in prof.layers)
    parts = {"macs": model.pj_per_mac * prof.totals.flops * 1e-9, "weight_bytes": model.pj_per_byte * weight_bytes * 1e-9,
             "activation_bytes": model.pj_per_byte * activation_bytes * 1e-9}
    return {"energy_mj": prof.energy_mj, "weight_bytes": weight_bytes, "activation_bytes": activation_bytes,
            **{f"{k}_share": v / prof.energy_mj for k, v in parts.items()}}


def structure(name: str, num_classes: int, shape, seeds: int) -> dict:
    """Planning only: each mode's mean reductions at −50 % energy, and how close ea's per-unit removals are to pa's and fa's."""
    removed, reductions = {m: [] for m in MODES}, {m: [] for m in MODES}
    for mode in MODES:
        for seed in range(seeds):
            plan = cdprune.make_plan(models.create(name, num_classes, shape[0]), shape, mode, TARGET,
                                     target_metric="energy", seed=seed)
            removed[mode].append([1 - len(u.kept) / u.channels for u in plan.units])
            reductions[mode].append({**plan.reduction, "energy": 1 - plan.energy["after_mj"] / plan.energy["before_mj"]})
    mean_removed = {m: np.mean(removed[m], axis=0) for m in MODES}
    return {
        "mean_reduction": {m: {k: float(np.mean([r[k] for r in reductions[m]])) for k in reductions[m][0]} for m in MODES},
        "mean_unit_removal": {m: [float(v) for v in mean_removed[m]] for m in MODES},
        # Mean over units of |ea's mean removed fraction − the other mode's|: 0 when the modes prune alike.
        "ea_vs_pa_unit_gap": float(np.mean(np.abs(mean_removed["ea"] - mean_removed["pa"]))),
        "ea_vs_fa_unit_gap": float(np.mean(np.abs(mean_removed["ea"] - mean_removed["fa"]))),
    }


def markdown(results: dict) -> str:
    b = results["budget"]
    lines = [f"# Energy-aware pruning: ea vs fa vs pa at −{results['target']:.0%} estimated energy", "",
             f"CPU: {results['cpu']}, {results['threads']} threads, torch {results['torch']}. Data: {results['data']}, "
             f"{b['epochs']} epochs on {b['train_subset']} training images, tested on {b['test_subset']}, batch "
             f"{b['batch_size']}, lr {b['lr']}, seed 0. Energy: estimated with the 45 nm default "
             f"(4.6 pJ/MAC + 160 pJ/byte) unless a meter answered (last column). Latency: median of batch-1 "
             f"runs in a fresh process (`cdprune bench`).", ""]
    for name, m in results["models"].items():
        rows = []
        for method, r in m["runs"].items():
            metered = r["bench_energy"]["energy_mj"] if r["bench_energy"]["kind"] == "measured" else None
            rows.append([method, f"{100 * r['test_acc']:.2f}%", human_count(r["params"]), human_count(r["flops"]),
                         human_bytes(r["memory_bytes"]), f"{r['energy_mj']:.3f} mJ", f"-{r['energy_reduction']:.1%}",
                         f"{r['latency_p50_ms']:.2f} ms", f"{r['mj_per_accuracy_point']:.4f}",
                         "-" if metered is None else f"{metered:.3f} mJ"])
        lines += [f"## {name} (input {'×'.join(map(str, m['input_shape']))})", "",
                  markdown_table(["run", "accuracy", "params", "FLOPs", "memory", "energy (est.)", "Δenergy",
                                  "latency p50", "mJ per accuracy point", "energy (measured)"], rows), "",
                  f"Cheapest in energy per accuracy point: **{m['cheapest_mj_per_accuracy_point']}**.", "",
                  "Where the estimated energy goes at batch 1:", "",
                  markdown_table(["run", "MACs", "weight bytes", "activation bytes", "bytes: weights / activations"],
                                 [[method, f"{d['macs_share']:.1%}", f"{d['weight_bytes_share']:.1%}",
                                   f"{d['activation_bytes_share']:.1%}",
                                   f"{human_bytes(d['weight_bytes'])} / {human_bytes(d['activation_bytes'])}"]
                                  for method, d in m["breakdown"].items()]), ""]
        st = m["structure"]
        lines += [f"Planning alone, {results['seeds_planned']} seeds, every mode stopping at −50 % energy (mean reductions):",
                  "",
                  markdown_table(["mode", "params", "FLOPs", "memory", "energy"],
                                 [[mode, *(f"-{r[k]:.1%}" for k in ("params", "flops", "memory", "energy"))]
                                  for mode, r in st["mean_reduction"].items()]), "",
                  f"Mean per-unit gap in the fraction of channels removed: ea vs pa {st['ea_vs_pa_unit_gap']:.3f}, "
                  f"ea vs fa {st['ea_vs_fa_unit_gap']:.3f} (0 = the modes prune the same units alike).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
