"""The `cdprune` command: parse arguments, call the public API, print.

Each subcommand is one `@command` function; user errors (CdpruneError) become
one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from dataclasses import asdict
from typing import Callable

from . import distributed, models
from .backends import BACKENDS, Resources
from .complexity import parse_shape, profile
from .data import DATASETS
from .errors import CdpruneError
from .experiment import DEFAULT_JOB, compare, main_job, sweep
from .deploy import FORMATS, INPUT_NAME, OPSET, OUTPUT_NAME, RUNTIMES, bench, export_run
from .methods import METHODS
from .pruning import MODES, PruningPlan, make_plan, parse_budget
from .formatting import human_bytes, human_count, table
from .report import compare_rows, comparison_table, profile_table, reduction_table
from .runs import RunSettings, eval_run, train_run
from .train import TrainingInterrupted

_COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}


def command(name: str, help: str):
    """Register `configure(parser)` for subcommand `name`; the decorated function runs it."""

    def wrap(run: Callable):
        def decorate(configure: Callable):
            _COMMANDS[name] = (configure, run, help)
            return configure
        return decorate

    return wrap


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=f"registered model: {', '.join(models.names())}")
    p.add_argument("--input", default="3,32,32", metavar="C,H,W", help="input shape (default 3,32,32)")
    p.add_argument("--num-classes", type=int, default=10, metavar="N", help="classifier outputs (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _build(args) -> tuple:
    shape = parse_shape(args.input)
    return models.create(args.model, num_classes=args.num_classes, in_channels=shape[0]), shape


# ---- profile -----------------------------------------------------------------------------------

def run_profile(args) -> None:
    model, shape = _build(args)
    result = profile(model, shape)
    if args.json:
        print_json({"model": args.model, **result.to_dict()})
        return
    print(f"{args.model} · input {'×'.join(map(str, shape))} · {args.num_classes} classes")
    print(profile_table(result))


@command("profile", "per-layer parameters, FLOPs and memory with their shares")(run_profile)
def _(p):
    _model_arguments(p)


# ---- prune -------------------------------------------------------------------------------------

def run_prune(args) -> None:
    model, shape = _build(args)
    budget = parse_budget(args.budget) if args.budget else None
    mode = args.mode or (None if budget else "fa")
    target = args.target if args.target is not None else (None if budget else 0.5)
    result = make_plan(model, shape, mode, target, budget=budget, seed=args.seed, step=args.step, floor=args.floor,
                  round_to=args.round_to, refresh_latency=args.refresh)
    out = result.save(args.out)
    if args.json:
        print_json({**result.to_dict(), "plan_path": str(out)})
        return
    title = MODES[result.mode].title if result.mode in MODES else "each draw follows the metric furthest over budget"
    goal = f"target {result.target:g}" if result.target is not None else ""
    if result.budget:
        goal += (" · " if goal else "") + "budget " + ", ".join(f"{m}≤{_budget_value(m, v)}" for m, v in result.budget.items())
    print(f"{args.model} · mode {result.mode} ({title}) · {goal} · seed {result.seed} · {result.steps} draws")
    print(reduction_table(result.before, result.after, result.latency))
    print()
    rows = [[u.name, str(len(u.convs)), str(u.channels), str(len(u.kept)), f"{1 - len(u.kept) / u.channels:.0%}"]
            for u in result.units]
    print(table(["unit", "convs", "channels", "kept", "removed"], rows))
    print(f"\nplan written to {out}")


def _budget_value(metric: str, value: float) -> str:
    if metric == "latency":
        return f"{value:g}ms"
    return human_bytes(value) if metric == "memory" else human_count(value)


@command("prune", "sample a complexity-driven pruning plan and write it")(run_prune)
def _(p):
    _model_arguments(p)
    p.add_argument("--mode", default=None, help=f"what to reduce: {', '.join(f'{m.name} ({m.title})' for m in MODES.values())}; "
                   "default fa, or with --budget the metric furthest over its budget at each draw")
    p.add_argument("--target", type=float, default=None, help="fraction of the mode's metric to remove, in (0, 1) (default 0.5 without --budget)")
    p.add_argument("--budget", default=None, metavar="LIMITS",
                   help="prune until every limit holds, e.g. flops=100M,params=2M,memory=512KB,latency=5ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=float, default=0.1, help="fraction of a unit's channels removed per draw (default 0.1)")
    p.add_argument("--floor", type=float, default=0.1, help="fraction of a unit's channels always kept (default 0.1)")
    p.add_argument("--round-to", type=int, default=1, metavar="R", help="keep channel counts multiples of R (8 or 16 suit SIMD/tensor cores)")
    p.add_argument("--refresh", action="store_true", help="rebuild the cached per-layer latency table (mode la, latency budgets)")
    p.add_argument("--out", default="plan.json", help="where to write the plan (default plan.json)")


# ---- train / eval / run -----------------------------------------------------------------------

def _subset(text: str) -> int | None:
    """'all' -> None (the whole split), else a positive count."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or 'all', got {text!r}") from None


def _training_arguments(p: argparse.ArgumentParser, defaults: dict) -> None:
    p.add_argument("--data", default=defaults.get("data"), required="data" not in defaults,
                   help=f"dataset: {', '.join(DATASETS)}")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files")
    p.add_argument("--download", action="store_true", help="fetch CIFAR into --data-dir when missing (needs a network)")
    p.add_argument("--epochs", type=int, default=defaults.get("epochs", 10), help=f"default {defaults.get('epochs', 10)}")
    p.add_argument("--batch-size", type=int, default=defaults.get("batch_size", 128),
                   help=f"default {defaults.get('batch_size', 128)}")
    p.add_argument("--lr", type=float, default=defaults.get("lr", 0.05),
                   help=f"initial learning rate, cosine-annealed (default {defaults.get('lr', 0.05)})")
    p.add_argument("--seed", type=int, default=0)
    for split in ("train", "test"):
        default = defaults.get(f"{split}_subset")
        p.add_argument(f"--{split}-subset", type=_subset, default=default, metavar="N|all",
                       help=f"{split} on N images, class-balanced and seeded, or all (default {default or 'all'})")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _settings(args, model: str) -> RunSettings:
    return RunSettings(model=model, data=args.data, data_dir=args.data_dir, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, train_subset=args.train_subset,
                       test_subset=args.test_subset, device=args.device, num_workers=args.workers)


def _print_run(metrics) -> None:
    print(table(["", metrics.method], [
        ["test accuracy", f"{100 * metrics.test_acc:.2f}%"],
        ["params", human_count(metrics.params)], ["FLOPs", human_count(metrics.flops)],
        ["memory", human_bytes(metrics.memory_bytes)], ["CPU latency, batch 1", f"{metrics.latency_ms:.2f} ms"],
        ["energy (est.)", f"{metrics.energy_mj:.3f} mJ"], ["training wall time", f"{metrics.train_time_s:.0f} s"]]))


def run_train(args) -> None:
    settings = _settings(args, args.model)
    pruning = PruningPlan.load(args.plan) if args.plan else None
    metrics = train_run(args.out, settings, pruning, resume=args.resume, download=args.download,
                        progress=not args.no_progress)
    if args.json:
        print_json(asdict(metrics))
        return
    _print_run(metrics)
    print(f"\nrun written to {args.out}")


@command("train", "train a dense or pruned model from scratch and write a run directory")(run_train)
def _(p):
    p.add_argument("model", help=f"registered model: {', '.join(models.names())}")
    p.add_argument("--plan", help="plan.json from 'cdprune prune' (omit for the dense model)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    _training_arguments(p, {})


def run_eval(args) -> None:
    result = eval_run(args.run, data_dir=args.data_dir, device=args.device)
    if args.json:
        print_json({**asdict(result), "matches": result.matches})
        return
    verdict = "matches the record" if result.matches else "DIFFERS from the record"
    print(f"test accuracy {100 * result.test_acc:.2f}% on {result.test_size} images "
          f"(recorded {100 * result.recorded_acc:.2f}%: {verdict})")


@command("eval", "rebuild a run's model from plan + weights and re-test it")(run_eval)
def _(p):
    p.add_argument("run", help="run directory written by 'cdprune train'")
    p.add_argument("--data-dir", default=None, help="where the dataset lives now (default: as recorded)")
    p.add_argument("--device", default=None, help="default: the device it was trained on")
    p.add_argument("--json", action="store_true")


def run_main(args) -> None:
    settings = _settings(args, args.model)
    out = args.out or f"runs/{args.model}-{args.data}-{args.mode}{args.target:g}"
    runs = main_job(out, settings, args.mode, args.target, download=args.download, progress=not args.no_progress)
    if args.json:
        print_json({"out": out, "runs": [asdict(r) for r in runs]})
        return
    print(f"{args.model} on {args.data}: dense vs {args.mode} at target {args.target:g}, "
          f"{settings.epochs} epochs on {runs[0].train_size} images, tested on {runs[0].test_size}")
    print(comparison_table(runs))
    print(f"\nreport: {out}/report.md, chart: {out}/comparison.png")


@command("run", "the main job: plan, train dense and pruned, compare (default: VGG-16, Fashion-MNIST, FA 0.5)")(run_main)
def _(p):
    p.add_argument("--model", default=DEFAULT_JOB["model"], help=f"default {DEFAULT_JOB['model']}")
    p.add_argument("--mode", default=DEFAULT_JOB["mode"], help=f"default {DEFAULT_JOB['mode']}")
    p.add_argument("--target", type=float, default=DEFAULT_JOB["target"], help=f"default {DEFAULT_JOB['target']}")
    p.add_argument("--out", default=None, help="output directory (default runs/MODEL-DATA-MODETARGET)")
    _training_arguments(p, DEFAULT_JOB)


# ---- bench / export ----------------------------------------------------------------------------

def run_bench(args) -> None:
    result = bench(args.target, plan=args.plan, runtime=args.runtime, batch=args.batch, threads=args.threads,
                   input_shape=parse_shape(args.input) if args.input else None, num_classes=args.num_classes,
                   min_time_s=args.min_time, min_repeats=args.min_repeats, device=args.device)
    if args.json:
        print_json(result.to_dict())
        return
    r = result
    print(f"{r.model} ({r.method}) · {r.runtime_version} · {r.device} ({r.device_name}) · "
          f"input {'×'.join(map(str, r.input_shape))} · batch {r.batch} · {r.threads} threads")
    print(table(["", "value"], [
        ["latency p50", f"{r.p50_ms:.2f} ms"], ["latency p90", f"{r.p90_ms:.2f} ms"],
        ["latency p99", f"{r.p99_ms:.2f} ms"], ["throughput", f"{r.throughput_per_s:.1f} inputs/s"],
        ["peak memory (RSS)", f"{human_bytes(r.peak_rss_bytes)} (+{human_bytes(r.rss_increase_bytes)} to load and run the model)"],
        ["CPU use", f"{r.cpu_percent:.0f}% of a core ({100 * r.cpu_utilisation:.0f}% of {r.threads} threads)"],
        ["energy / inference", f"{r.energy_mj:.3f} mJ ({r.energy['kind']})"],
        ["params", human_count(r.params)], ["FLOPs (MACs)", human_count(r.flops)],
        ["timed runs", f"{r.repeats} in {r.timed_s:.1f} s"]]))
    print(f"\nenergy: {r.energy['source']}")


@command("bench", "time a run or a model in a fresh process: latency, throughput, memory, CPU, energy")(run_bench)
def _(p):
    p.add_argument("target", metavar="RUN_DIR|MODEL",
                   help=f"run directory, or a registered model with fresh weights: {', '.join(models.names())}")
    p.add_argument("--plan", help="plan.json to prune MODEL with (a run directory holds its own)")
    p.add_argument("--input", default=None, metavar="C,H,W", help="input shape for MODEL (default 3,32,32)")
    p.add_argument("--num-classes", type=int, default=10, metavar="N", help="classifier outputs for MODEL (default 10)")
    p.add_argument("--batch", type=int, default=1, help="inputs per run (default 1)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's default)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch", help="default torch")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (torch runtime only)")
    p.add_argument("--min-time", type=float, default=2.0, metavar="S", help="time at least S seconds (default 2)")
    p.add_argument("--min-repeats", type=int, default=50, metavar="N", help="and at least N runs (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run_export(args) -> None:
    path = export_run(args.run, args.format, args.out)
    info = {"path": str(path), "format": args.format, "bytes": path.stat().st_size}
    if args.format == "onnx":
        info.update(opset=OPSET, input=INPUT_NAME, output=OUTPUT_NAME, dynamic_batch=True)
    if args.json:
        print_json(info)
        return
    print(f"{args.format} model written to {path} ({human_bytes(info['bytes'])})")


@command("export", "write a run's model as ONNX or TorchScript for deployment")(run_export)
def _(p):
    p.add_argument("run", metavar="RUN_DIR", help="run directory written by 'cdprune train'")
    p.add_argument("--format", choices=list(FORMATS), default="onnx", help="default onnx")
    p.add_argument("--out", default=None, metavar="FILE", help="default RUN_DIR/model.onnx or RUN_DIR/model.pt")
    p.add_argument("--json", action="store_true", help="machine-readable output")


# ---- compare / sweep ---------------------------------------------------------------------------

def _csv(text: str, kind=str) -> list:
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CdpruneError(f"bad list '{text}': give comma-separated values, e.g. 0.3,0.5,0.7") from None


def _backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: one run after another here (default); ray: each run as a Ray task")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto', or ray://HOST:10001); default: start one on this machine")
    p.add_argument("--task-cpus", type=float, default=1, metavar="N",
                   help="CPUs each Ray task reserves, also its PyTorch threads (default 1)")
    p.add_argument("--task-gpus", type=float, default=0, metavar="N", help="GPUs each Ray task reserves (default 0)")


def _resources(args) -> Resources:
    if args.backend == "local" and (args.address or args.task_cpus != 1 or args.task_gpus):
        raise CdpruneError("--address, --task-cpus and --task-gpus apply to --backend ray only: add --backend ray")
    if args.task_cpus < 1 or args.task_gpus < 0:
        raise CdpruneError(f"--task-cpus must be >= 1 and --task-gpus >= 0 (got {args.task_cpus:g}, {args.task_gpus:g})")
    return Resources(cpus=args.task_cpus, gpus=args.task_gpus, address=args.address)


def run_compare(args) -> None:
    settings = _settings(args, args.model)
    out = args.out or f"runs/compare-{args.model}-{args.data}-{args.metric}{args.target:g}"
    summaries = compare(out, settings, _csv(args.methods), args.target, metric=args.metric, seeds=args.seeds,
                        download=args.download, progress=not args.no_progress, backend=args.backend,
                        resources=_resources(args))
    if args.json:
        print_json({"out": out, "summaries": [asdict(s) for s in summaries]})
        return
    print(f"{args.model} on {args.data}: every method at a {args.target:g} {args.metric} reduction, "
          f"{args.seeds} seed(s), {settings.epochs} epochs")
    print(table(*compare_rows(summaries)))
    print(f"\ntables: {out}/compare.md, {out}/compare.csv, {out}/compare.json")


@command("compare", "train methods and baselines to the same target and compare accuracy and cost")(run_compare)
def _(p):
    p.add_argument("--model", required=True, help=f"registered model: {', '.join(models.names())}")
    p.add_argument("--target", type=float, default=0.5, help="reduction every method reaches (default 0.5)")
    p.add_argument("--metric", default="flops", choices=["params", "flops", "memory"],
                   help="the metric the target applies to, for every method (default flops)")
    p.add_argument("--methods", default="dense,pa,fa,ma,uniform,layer-random,l1",
                   help=f"comma-separated, from {', '.join(METHODS)} (default dense,pa,fa,ma,uniform,layer-random,l1)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per method: --seed, --seed+1, … (default 1)")
    p.add_argument("--out", default=None, help="output directory (default runs/compare-MODEL-DATA-METRICTARGET)")
    _training_arguments(p, {})
    _backend_arguments(p)


def run_sweep(args) -> None:
    settings = _settings(args, args.model)
    out = args.out or f"runs/sweep-{args.model}-{args.data}"
    points = sweep(out, settings, _csv(args.modes), _csv(args.targets, float), download=args.download,
                   progress=not args.no_progress, bench_time_s=args.bench_time, backend=args.backend,
                   resources=_resources(args))
    if args.json:
        print_json({"out": out, "points": points})
        return
    rows = [[p["method"], p["status"]] + ([f"{100 * p['test_acc']:.2f}%", human_count(p["params"]),
                                           human_count(p["flops"]), human_bytes(p["memory_bytes"]),
                                           f"{p['latency_ms']:.2f} ms", f"{p['energy_mj']:.3f} mJ",
                                           f"{p['cpu_percent']:.0f}%"] if p["status"] == "ok" else [""] * 7)
            for p in points]
    print(table(["run", "status", "accuracy", "params", "FLOPs", "memory", "latency", "energy (est.)", "CPU"], rows))
    print(f"\ndata: {out}/sweep.csv; charts: {out}/tradeoff_resources.png, {out}/tradeoff_device.png")


@command("sweep", "trade-off curves: accuracy against params, FLOPs, memory, latency, energy, CPU")(run_sweep)
def _(p):
    p.add_argument("--model", required=True, help=f"registered model: {', '.join(models.names())}")
    p.add_argument("--modes", default="pa,fa,ma", help="comma-separated modes (default pa,fa,ma)")
    p.add_argument("--targets", default="0.3,0.5,0.7,0.9", help="comma-separated targets (default 0.3,0.5,0.7,0.9)")
    p.add_argument("--bench-time", type=float, default=1.0, metavar="S",
                   help="seconds of timed inference per point for latency and CPU (default 1)")
    p.add_argument("--out", default=None, help="output directory (default runs/sweep-MODEL-DATA)")
    _training_arguments(p, {})
    _backend_arguments(p)


# ---- entry point -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format."""

    def error(self, message: str):
        self.exit(2, f"cdprune: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cdprune", description="Complexity-driven structured pruning of CNNs for edge devices.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (configure, run, help) in _COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        configure(p)
        p.set_defaults(handler=run)
    return parser


# Only training splits into data-parallel processes; the other commands would all write the same files.
TORCHRUN_COMMANDS = ("train",)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        group = distributed.from_environment()
        if group.active and args.command not in TORCHRUN_COMMANDS:
            raise CdpruneError(f"'cdprune {args.command}' does not run under torchrun; only 'cdprune train' does "
                               "(spread compare and sweep over machines with --backend ray)")
        # Rank 0 prints the results, once.
        with contextlib.nullcontext() if group.is_main else contextlib.redirect_stdout(io.StringIO()):
            args.handler(args)
    except TrainingInterrupted as exc:
        print(f"cdprune: {exc}", file=sys.stderr)
        return 130
    except CdpruneError as exc:
        print(f"cdprune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cdprune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
