"""The `cdprune` command: parse arguments, call the public API (`cdprune/__init__.py`), print what
`cdprune.report` formatted.

Each subcommand is one `@command` function; user errors (CdpruneError, and OS errors such
as an unwritable --out) become one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import io
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

from . import (AUGMENTATIONS, BACKENDS, DATASETS, DEFAULT_ENERGY_MODEL, DEFAULT_JOB, DEFAULT_ROUND_TO, FORMATS,
               DEFAULT_MARGIN, METHODS, METRICS, MODES, PRECISIONS, Budget, CdpruneError, CheckFailed, EnergyModel, LatencyTable,
               PlannerConfig, PruningPlan,
               Resources, RunSettings, TrainingInterrupted, bench, build_latency_table, compare, distributed, eval_onnx,
               eval_run, export_run, half_width_copy, latency_margin, main_job, make_plan, models, parse_budget, parse_shape, profile,
               prunable_units, report, sweep, tasks, train_run, write_samples)
from .deploy.samples import check_job_samples
from .pruning.apply import KEEP_RULES
from .runs.records import DISTILL_TEMPERATURE, DISTILL_WEIGHT
from . import bench_runtimes, table_runtimes, write_latency_pack

TABLE_PRECISIONS = ("fp32", "int8")  # what latency tables time (int8: onnxruntime, measure/runtimes.py)
from .data import dataset_info

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


def print_record(record, args, text: str) -> None:
    """The record as JSON with --json, else the formatted text."""
    if args.json:
        print(record.to_json(), end="")
    else:
        print(text)


def number(text: str) -> float:
    """An argparse type: a finite number (NaN and infinity would train to NaN weights or plan to nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


MODEL_HELP = (f"a registered model ({', '.join(models.names())}), or a reference package.module:callable or "
              "path/to/file.py:callable (e.g. timm:create_model with --model-args "
              "'{\"model_name\": \"resnet18\", \"num_classes\": 10, \"in_chans\": 3}')")


def _model_args_argument(p: argparse.ArgumentParser, job: dict | None = None) -> None:
    """--model-args; `job` (the main job's DEFAULT_JOB) names its default for the job's own model only."""
    default = (f"; default {json.dumps(job['model_args'])} when --model is left out, none for a named model"
               if job and "model_args" in job else "")
    p.add_argument("--model-args", default=None, metavar="JSON",
                   help="keyword arguments of the model's constructor as a JSON object, e.g. '{\"width\": 0.5}' "
                        f"(num_classes and in_channels come from the data where the constructor names them){default}")


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=MODEL_HELP)
    _model_args_argument(p)
    p.add_argument("--input", default=None, metavar="C,H,W",
                   help="input shape (default: the data's with --data, else 3,32,32)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="classifier outputs (default: the data's classes with --data, else 10)")
    p.add_argument("--data", default=None,
                   help="read classes and input shape from this data, as 'cdprune train --data' will see it "
                        "(a dataset name, a folder of class folders or a .npz file)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files (with --data)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _energy_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--energy-model", default=None, metavar="FILE.json",
                   help="a device's energy coefficients, {\"pj_per_mac\": …, \"pj_per_byte\": …, \"static_w\": …, "
                        "\"device\": …} (default: 45 nm, 4.6 pJ/MAC + 160 pJ/byte; 'cdprune bench --calibrate-energy' "
                        "writes one)")


def _energy_model(args) -> EnergyModel:
    return EnergyModel.load(args.energy_model) if args.energy_model else DEFAULT_ENERGY_MODEL


def _planner_arguments(p: argparse.ArgumentParser) -> None:
    defaults = PlannerConfig()
    p.add_argument("--step", type=number, default=defaults.step,
                   help=f"fraction of a unit's channels removed per draw (default {defaults.step:g})")
    p.add_argument("--floor", type=number, default=defaults.floor,
                   help=f"fraction of a unit's channels always kept (default {defaults.floor:g})")
    p.add_argument("--round-to", type=int, default=DEFAULT_ROUND_TO, metavar="R",
                   help=f"keep channel counts multiples of R (8 or 16 suit SIMD/tensor cores; default {DEFAULT_ROUND_TO})")


def _planner(args) -> PlannerConfig:
    return PlannerConfig(step=args.step, floor=args.floor, round_to=args.round_to)


def _budget_help() -> str:
    by_units: dict[str, list[str]] = {}
    for m in METRICS.values():
        by_units.setdefault(m.units_text(), []).append(m.name)
    units = "; ".join(f"{', '.join(names)} in {text}" for text, names in by_units.items())
    return (f"prune until every limit holds, e.g. {','.join(f'{m.name}={m.example}' for m in METRICS.values())} "
            f"({units}; m is milli, M mega)")


def _budget_arguments(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """--budget (or a sweep's --budgets), with the latency table, runtime and precision that go with it."""
    if sweep:
        p.add_argument("--budgets", default=None, metavar="LIMITS;LIMITS;…",
                       help="instead of --targets: one run per mode per budget, budgets separated by ';', e.g. "
                            "'latency=2ms;latency=1ms' (each as --budget takes it; every budget limits the first "
                            "budget's first metric, the axis of tradeoff_budget.png)")
    else:
        p.add_argument("--budget", default=None, metavar="LIMITS",
                       help=f"instead of --target: {_budget_help()}; every pruned model is then exported at "
                            "--precision and checked against the limits")
    p.add_argument("--latency-table", default=None, metavar="FILE",
                   help="per-layer latency table measured on the target device ('cdprune latency-table') for latency "
                        "limits (default: measure this machine, cached); its runtime and threads also time the shipped "
                        "model")
    p.add_argument("--runtime", choices=table_runtimes(), default=None,
                   help="runtime whose latency the limits estimate and the shipped model is timed in (default: the "
                        "table's, else torch; without a latency limit onnxruntime)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the precision that ships: the pruned model is exported as fp32 or static int8 ONNX and "
                        "measured so (default fp32)")
    _margin_argument(p)
    p.add_argument("--no-fit", dest="fit", action="store_false",
                   help="do not time each plan on this machine before training (by default, where the latency table "
                        "was timed on this CPU in onnxruntime, a plan whose file misses the limit less its margin is "
                        "made again, tighter)")


def _margin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--margin", type=number, default=None, metavar="FRACTION",
                   help=f"fraction of a latency limit kept free when planning, in [-0.5, 0.5), for the device's "
                        f"run-to-run drift (default {DEFAULT_MARGIN:g} with a latency limit)")


def _budget(args, text: str | None) -> Budget | None:
    """The budget of --budget (or one entry of --budgets) with its table, runtime and precision; None without one."""
    if text is None:
        given = [flag for flag, value in (("--latency-table", args.latency_table), ("--runtime", args.runtime),
                                          ("--precision", args.precision), ("--margin", args.margin)) if value is not None]
        given += [] if args.fit else ["--no-fit"]
        if given:
            raise CdpruneError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with a budget",
                               "add --budget (sweep: --budgets), or drop them")
        return None
    table = LatencyTable.load(args.latency_table) if args.latency_table else None
    return Budget(parse_budget(text), text.strip(), table, args.runtime, args.precision, args.margin, args.fit)


def _model_flags(args) -> str:
    """The flags of _model_arguments that were given, shell-quoted: printed commands run as printed."""
    given = [("--model-args", args.model_args), ("--input", args.input), ("--data", args.data),
             ("--data-dir", args.data_dir), ("--num-classes", None if args.num_classes is None else str(args.num_classes))]
    return "".join(f" {flag} {shlex.quote(value)}" for flag, value in given if value)


def _build(args) -> tuple:
    """The model of _model_arguments, its input shape and classes: given, read from --data, or the defaults."""
    shape = parse_shape(args.input) if args.input else None
    num_classes = args.num_classes
    if args.data:
        info = dataset_info(args.data, args.data_dir, input_shape=shape)
        if num_classes is not None and num_classes != info.num_classes:
            raise CdpruneError(f"--num-classes {num_classes} contradicts the {info.num_classes} classes of {args.data}",
                               "drop --num-classes, --data gives it")
        shape, num_classes = info.input_shape, info.num_classes
    elif args.data_dir:
        raise CdpruneError("--data-dir says where --data lives", "add --data")
    shape, num_classes = shape or (3, 32, 32), 10 if num_classes is None else num_classes
    model = models.create(args.model, num_classes=num_classes, in_channels=shape[0],
                          model_args=models.parse_model_args(args.model_args))
    return model, shape, num_classes


# ---- profile -----------------------------------------------------------------------------------

def run_profile(args) -> None:
    energy_model = _energy_model(args)  # a bad file fails before the model is built
    model, shape, num_classes = _build(args)
    result = profile(model, shape, energy_model)
    if args.json:
        print_json({"model": args.model, **result.to_dict()})
        return
    print(f"{args.model} · input {'×'.join(map(str, shape))} · {num_classes} classes")
    print(report.profile_table(result))


@command("profile", "per-layer parameters, FLOPs, memory and estimated energy with their shares")(run_profile)
def _(p):
    _model_arguments(p)
    _energy_model_argument(p)


# ---- prune -------------------------------------------------------------------------------------

def run_prune(args) -> None:
    # As in the API: a plan records energy when an energy model is given or energy is part of the goal.
    energy_model = _energy_model(args) if args.energy_model else None
    model, shape, num_classes = _build(args)
    budget = parse_budget(args.budget) if args.budget else None
    mode = args.mode or (None if budget else "fa")
    target = args.target if args.target is not None else (None if budget else 0.5)
    units = prunable_units(model, shape) if args.verbose else None
    if units is not None and not units.units:
        print(report.units_text(units), file=sys.stderr)  # why make_plan is about to refuse
    plan = make_plan(model, shape, mode, target, budget=budget, target_metric=args.target_metric, seed=args.seed,
                     **_planner(args).to_dict(), refresh_latency=args.refresh, latency_table=args.latency_table,
                     latency_runtime=args.runtime, latency_precision=args.precision, energy_model=energy_model,
                     margin=latency_margin(args.margin, budget or {}))
    plan_path = plan.save(args.out)
    if args.json:
        extra = {"excluded": units.to_dict()["excluded"]} if units is not None else {}
        print_json({**plan.to_dict(), "plan_path": str(plan_path), **extra})
        return
    title = MODES[plan.mode].title if plan.mode in MODES else "each draw follows the metric furthest over budget"
    print(report.plan_text(plan, args.model, title, plan_path))
    if units is not None:
        print("\n" + report.units_text(units))


@command("prune", "sample a complexity-driven pruning plan and write it")(run_prune)
def _(p):
    _model_arguments(p)
    p.add_argument("--mode", default=None, help=f"what to reduce: {', '.join(f'{m.name} ({m.title})' for m in MODES.values())}; "
                   "default fa, or with --budget the metric furthest over its budget at each draw")
    p.add_argument("--target", type=number, default=None, help="fraction of the mode's metric to remove, in (0, 1) (default 0.5 without --budget)")
    p.add_argument("--target-metric", default=None, choices=list(METRICS),
                   help="the metric --target reduces, when it is not the mode's own (the mode still weights the draws)")
    p.add_argument("--budget", default=None, metavar="LIMITS", help=_budget_help())
    p.add_argument("--seed", type=int, default=0)
    _planner_arguments(p)
    p.add_argument("--latency-table", default=None, metavar="FILE",
                   help="per-layer latency table measured on the target device ('cdprune latency-table') for mode la "
                        "and latency budgets (default: measure this machine, cached)")
    p.add_argument("--runtime", choices=table_runtimes(), default=None,
                   help="runtime whose latency mode la and latency budgets estimate (default: the table's, else torch)")
    p.add_argument("--precision", choices=TABLE_PRECISIONS, default=None,
                   help="precision the model ships in, whose latency mode la and latency budgets estimate (int8: "
                        "onnxruntime; default: the table's, else fp32)")
    _margin_argument(p)
    p.add_argument("--refresh", action="store_true", help="rebuild the cached per-layer latency table (mode la, latency budgets)")
    _energy_model_argument(p)
    p.add_argument("--out", default="plan.json", help="where to write the plan (default plan.json)")
    p.add_argument("--verbose", action="store_true",
                   help="also list the coupled channels that cannot be pruned, each with the reason")


# ---- latency-table -----------------------------------------------------------------------------

def run_latency_table(args) -> None:
    if (args.out is None) == (args.pack is None):
        raise CdpruneError("give either --out FILE (time the table here) or --pack DIR (files to time on the board)")
    model, shape, num_classes = _build(args)
    progress = not (args.json or args.no_progress)
    half, fractions = half_width_copy(model, shape)  # the table's second calibration point
    point = {"calibration_model": half, "calibration_fractions": fractions}
    if args.pack is not None:
        folder = write_latency_pack(model, shape, args.pack, args.runtime, args.threads, precision=args.precision,
                                    repeats=args.repeats, min_time_s=args.min_time, progress=progress, **point)
        if args.json:
            print_json({"pack": str(folder), "script": str(folder / "measure_table.py")})
            return
        print(report.latency_pack_text(folder, args.model, _model_flags(args)))
        return
    table = build_latency_table(model, shape, args.runtime, args.threads, repeats=args.repeats,
                                min_time_s=args.min_time, progress=progress, precision=args.precision, **point)
    path = table.save(args.out)
    if args.json:
        print_json({**table.to_dict(), "path": str(path)})
        return
    print(report.latency_table_text(table, args.model, path, _model_flags(args)))


@command("latency-table", "time every layer on this device for planning elsewhere (mode la, latency budgets)")(
    run_latency_table)
def _(p):
    _model_arguments(p)
    p.add_argument("--runtime", choices=table_runtimes(), required=True,
                   help="the runtime the model will run in on this device (onnxruntime: layers as deployed, BN folded)")
    p.add_argument("--precision", choices=TABLE_PRECISIONS, default="fp32",
                   help="precision the model will ship in (int8: onnxruntime, each layer quantised as export --int8 "
                        "quantises; default fp32)")
    p.add_argument("--threads", type=int, required=True, metavar="N", help="intra-op threads the model will run with")
    p.add_argument("--repeats", type=int, default=15, metavar="N", help="timed runs per grid entry, at least (default 15)")
    p.add_argument("--min-time", type=number, default=0.03, metavar="S",
                   help="seconds per grid entry, at least (default 0.03)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--out", default=None, metavar="FILE", help="where to write the table (JSON)")
    p.add_argument("--pack", default=None, metavar="DIR",
                   help="instead of timing here, write a new folder of ONNX files and a script that times them on a "
                        "board with only onnxruntime and numpy ('python DIR/measure_table.py --out table.json')")


# ---- train / eval / run -----------------------------------------------------------------------

def _slug(ref: str) -> str:
    """A folder-name piece for a model reference or data path: 'nets/edge.py:EdgeNet' -> 'EdgeNet'."""
    name = ref.rpartition(":")[2] or ref
    return Path(name.rstrip("/")).name.removesuffix(".npz") or "data"


def _run_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="REF",
                   help="the model reference the run was trained with, when it is not a registered model "
                        "(cdprune imports code only when you name it)")
    p.add_argument("--allow-changed-source", action="store_true",
                   help="go on, with a warning, when the model's source files differ from those the run was trained "
                        "with (refused otherwise)")


def _subset(text: str) -> int | None:
    """'all' -> None (the whole split), else a positive count."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or 'all', got {text!r}") from None


def _training_arguments(p: argparse.ArgumentParser, job: dict) -> None:
    """The training flags; their defaults are RunSettings' (train, compare, sweep), overridden by `job` (the main
    job's DEFAULT_JOB)."""
    defaults = {**{f.name: f.default for f in dataclasses.fields(RunSettings) if f.default is not dataclasses.MISSING},
                **job}
    p.add_argument("--data", default=defaults.get("data"), required="data" not in defaults,
                   help=f"a dataset ({', '.join(DATASETS)}), a folder of class folders (with or without train/ "
                        "and val/), or a .npz file with x_train, y_train, x_test, y_test")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files")
    p.add_argument("--input", default=None, metavar="C,H,W",
                   help="convert images to C channels and resize them to H×W (folder and .npz data)")
    p.add_argument("--augment", default=None, choices=AUGMENTATIONS,
                   help="training augmentation (default: crop-flip from 32 px up, crop below; the registered "
                        "datasets keep their own)")
    p.add_argument("--val-fraction", type=number, default=0.2, metavar="F",
                   help="share of each class held out for testing when a folder has no val/ or test/ (default 0.2)")
    _model_args_argument(p, job)
    p.add_argument("--download", action="store_true", help="fetch CIFAR into --data-dir when missing (needs a network)")
    p.add_argument("--task", default=tasks.DEFAULT_TASK, choices=tasks.list_tasks(),
                   help="what the network learns: classify (labels), denoise (Gaussian noise) or sr "
                        "(super-resolution); the restoration tasks use the images alone (default classify)")
    p.add_argument("--noise", type=number, default=None, metavar="SIGMA",
                   help="denoise: standard deviation of the noise on the 0-255 scale (default 25)")
    p.add_argument("--scale", type=int, default=None, help="sr: down-sampling factor, 2 or 4 (default 2)")
    p.add_argument("--loss", default=None, help="denoise and sr: mse (default) or l1")
    p.add_argument("--epochs", type=int, default=defaults["epochs"], help=f"default {defaults['epochs']}")
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"], help=f"default {defaults['batch_size']}")
    classify, denoise = tasks.get_task("classify"), tasks.get_task("denoise")
    p.add_argument("--lr", type=number, default=None,
                   help=f"peak learning rate at batch {classify.reference_batch}, scaled to --batch-size: linearly for "
                        f"SGD (lr × batch / {classify.reference_batch}), by the square root for Adam; warmed up, "
                        f"then cosine-annealed to 0 (default {defaults['lr'] or classify.default_lr} for classify "
                        f"with SGD, {denoise.default_lr} for denoise and sr with Adam)")
    p.set_defaults(classify_lr=defaults.get("lr"))
    p.add_argument("--warmup", type=number, default=defaults["warmup"], metavar="F",
                   help="share of the optimiser steps over which the LR rises linearly to its peak, before the "
                        f"cosine (default {defaults['warmup']}; 0: none)")
    p.add_argument("--label-smoothing", type=number, default=None, metavar="S",
                   help=f"classify: train on labels smoothed by S (default {classify.default_label_smoothing}; "
                        "0: none); refused for denoise and sr")
    p.add_argument("--autocast", default=None, metavar="bf16",
                   help="train with the forward pass and loss in bf16 autocast (weights, gradients and the optimiser "
                        "stay fp32; evaluation, export and latency are fp32); default: fp32")
    p.add_argument("--seed", type=int, default=defaults["seed"], help=f"default {defaults['seed']}")
    for split in ("train", "test"):
        default = defaults.get(f"{split}_subset")
        p.add_argument(f"--{split}-subset", type=_subset, default=default, metavar="N|all",
                       help=f"{split} on N images, class-balanced and seeded, or all (default {default or 'all'})")
    p.add_argument("--init", default=None, metavar="RUN|FILE.safetensors",
                   help="start from trained weights instead of a fresh initialisation: a finished dense run of the same "
                        "model, or a safetensors file of its dense state dict; a pruned model keeps its kept filters' "
                        "weights")
    p.add_argument("--keep", default=None, choices=KEEP_RULES,
                   help="with --init, which filters a pruned unit keeps (as many as the plan keeps): l1, the largest "
                        "L1 norms (default), or random, the plan's own channels, drawn with its seed")
    p.add_argument("--distill", default=None, metavar="RUN",
                   help="train against a finished teacher run's outputs as well as the targets (same task and data "
                        "shape)")
    p.add_argument("--distill-temperature", type=number, default=None, metavar="T",
                   help=f"classify: the softmax temperature of --distill (default {DISTILL_TEMPERATURE:g})")
    p.add_argument("--distill-weight", type=number, default=None, metavar="ALPHA",
                   help=f"the teacher's share of the loss, in [0, 1] (default {DISTILL_WEIGHT:g})")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _settings(args, model: str) -> RunSettings:
    return RunSettings(model=model, data=args.data, data_dir=args.data_dir,
                       model_args=models.parse_model_args(args.model_args),
                       input_shape=list(parse_shape(args.input)) if args.input else None, augment=args.augment,
                       val_fraction=args.val_fraction, epochs=args.epochs,
                       batch_size=args.batch_size, lr=_lr(args), seed=args.seed, train_subset=args.train_subset,
                       test_subset=args.test_subset, device=args.device, num_workers=args.workers, task=args.task,
                       noise=args.noise, scale=args.scale, loss=args.loss, warmup=args.warmup,
                       label_smoothing=args.label_smoothing, autocast=args.autocast, init=args.init, keep=args.keep,
                       distill=args.distill, distill_temperature=args.distill_temperature,
                       distill_weight=args.distill_weight)


def _lr(args) -> float | None:
    """--lr, else the command's own default for the default task (the main job's 0.08 for classify), else None:
    the task's default."""
    if args.lr is not None:
        return args.lr
    return args.classify_lr if args.task == tasks.DEFAULT_TASK else None


def run_train(args) -> None:
    settings = _settings(args, args.model)
    plan = PruningPlan.load(args.plan_path) if args.plan_path else None
    metrics = train_run(args.out, settings, plan, resume=args.resume, download=args.download,
                        progress=not args.no_progress)
    print_record(metrics, args, f"{report.run_text(metrics)}\n\nrun written to {args.out}")


@command("train", "train a dense or pruned model from scratch and write a run directory")(run_train)
def _(p):
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--plan", dest="plan_path", help="plan.json from 'cdprune prune' (omit for the dense model)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    _training_arguments(p, {})


def run_eval(args) -> None:
    if args.samples_dir is not None and args.samples is None:
        raise CdpruneError("--samples-dir says where --samples writes its pictures", "add --samples N")
    if args.onnx:
        if args.model or args.device:
            raise CdpruneError("--file tests the exported file in its runtime on the CPU", "drop --model and --device")
        result = eval_onnx(args.run, args.onnx, data_dir=args.data_dir)
        text = report.onnx_eval_text(result)
    else:
        result = eval_run(args.run, data_dir=args.data_dir, device=args.device, model=args.model,
                          allow_changed_source=args.allow_changed_source)
        text = report.eval_text(result)
    if args.samples is None:
        print_record(result, args, text)
        return
    # Written after the eval has checked the run (and the file), so a refused eval writes nothing.
    samples = write_samples(args.run, args.samples, args.samples_dir, model=args.model, onnx=args.onnx,
                            data_dir=args.data_dir, allow_changed_source=args.allow_changed_source)
    if args.json:
        print_json({**result.to_dict(), "samples": samples.to_dict()})
    else:
        print(f"{text}\n{report.samples_text(samples)}")


@command("eval", "rebuild a run's model from plan + weights and re-test it")(run_eval)
def _(p):
    p.add_argument("run", help="run directory written by 'cdprune train'")
    p.add_argument("--data-dir", default=None, help="where the dataset lives now (default: as recorded)")
    _run_model_argument(p)
    p.add_argument("--device", default=None, help="default: the device it was trained on")
    p.add_argument("--file", "--onnx", dest="onnx", default=None, metavar="FILE",
                   help="test this exported file (fp32 or int8; .onnx, .ort, .pte, .tflite, by its suffix) in its "
                        "runtime instead of the PyTorch model")
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help="denoise and sr runs: write the input, the output (of --onnx's file, if given) and the target "
                        "of the first N test images as 8-bit PNGs (classify runs are refused)")
    p.add_argument("--samples-dir", default=None, metavar="DIR", help="where --samples writes (default RUN/samples)")
    p.add_argument("--json", action="store_true")


def run_main(args) -> None:
    if args.samples_dir is not None and args.samples is None:
        raise CdpruneError("--samples-dir says where --samples writes its pictures", "add --samples N")
    if args.model is None:  # the job's own model, at the job's width; a named model is built as it is registered
        args.model = DEFAULT_JOB["model"]
        if args.model_args is None:
            args.model_args = json.dumps(DEFAULT_JOB["model_args"])
    settings = _settings(args, args.model)
    if args.samples is not None:  # refused before any training
        check_job_samples(settings, args.samples, args.download)
    task = f"-{args.task}" if tasks.get_task(args.task).named_in_titles else ""
    if args.budget is not None and args.target is not None:
        raise CdpruneError("--budget and --target both say how far to prune", "give one of them")
    budget = _budget(args, args.budget)
    target = None if budget is not None else DEFAULT_JOB["target"] if args.target is None else args.target
    goal = f"-{budget.slug}" if budget is not None else f"{target:g}"
    out = args.out or f"runs/{_slug(args.model)}-{_slug(args.data)}{task}-{args.mode}{goal}"
    result = main_job(out, settings, args.mode, target, planner=_planner(args), download=args.download,
                      progress=not args.no_progress, budget=budget,
                      train_budget=args.train_budget)
    samples = [] if args.samples is None else [
        write_samples(Path(out) / run.method, args.samples,
                      None if args.samples_dir is None else Path(args.samples_dir) / run.method)
        for run in result.runs]
    if args.json:
        print_json({**result.to_dict(), **({"samples": [s.to_dict() for s in samples]} if samples else {})})
    else:
        print("\n".join([report.main_job_text(result), *map(report.samples_text, samples)]))


@command("run", "the main job: plan, train dense and pruned, compare (default: VGG-16, Fashion-MNIST, FA 0.5)")(run_main)
def _(p):
    p.add_argument("--model", default=None, help=f"{MODEL_HELP} (default {DEFAULT_JOB['model']} with --model-args "
                                                 f"'{json.dumps(DEFAULT_JOB['model_args'])}')")
    p.add_argument("--mode", default=DEFAULT_JOB["mode"], help=f"default {DEFAULT_JOB['mode']}")
    p.add_argument("--target", type=number, default=None, help=f"default {DEFAULT_JOB['target']} (not with --budget)")
    _budget_arguments(p)
    p.add_argument("--out", default=None, help="output directory (default runs/MODEL-DATA-MODETARGET, with --budget "
                                              "runs/MODEL-DATA-MODE-LIMITS)")
    _planner_arguments(p)
    _training_arguments(p, DEFAULT_JOB)
    _train_budget_argument(p)
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help="denoise and sr: write the input, output and target of the first N test images of the dense "
                        "and the pruned run as 8-bit PNGs, into OUT/RUN/samples (refused for classify before training)")
    p.add_argument("--samples-dir", default=None, metavar="DIR", help="where --samples writes (default OUT/RUN/samples), "
                   "one folder per run")


# ---- bench / export ----------------------------------------------------------------------------

def _file_runtime(path: str) -> str:
    """The runtime of the format bench times whose suffix `path` has (longest first); torch, which refuses a file,
    for any other."""
    formats = sorted((f for f in FORMATS.values() if f.bench and f.runtime), key=lambda f: -len(f.suffix))
    return next((f.runtime for f in formats if path.endswith(f.suffix)), "torch")


def run_bench(args) -> None:
    runtime = args.runtime or (_file_runtime(args.onnx) if args.onnx else "torch")
    result = bench(args.source, plan_path=args.plan_path, runtime=runtime, batch=args.batch,
                   threads=args.threads, input_shape=parse_shape(args.input) if args.input else None,
                   num_classes=args.num_classes, min_time_s=args.min_time, min_repeats=args.min_repeats,
                   device=args.device, model=args.model, model_args=models.parse_model_args(args.model_args),
                   int8=args.int8, calibration_images=args.calibration_images, data_dir=args.data_dir,
                   energy_model=args.energy_model, calibrate_energy=args.calibrate_energy,
                   allow_changed_source=args.allow_changed_source, file=args.onnx)
    print_record(result, args, report.bench_text(result))
    if args.strict and result.budget is not None and not result.budget["passed"]:
        failed = [row["metric"] for row in result.budget["rows"] if not row["passed"]]
        raise CheckFailed(f"the budget fails on {', '.join(failed)} for what was timed (--strict)",
                          "prune further, or measure where the model will run", result=result)


@command("bench", "time a run or a model in a fresh process: latency, throughput, memory, CPU, energy")(run_bench)
def _(p):
    p.add_argument("source", metavar="RUN_DIR|MODEL",
                   help=f"run directory, or a model with fresh weights: {MODEL_HELP}")
    _run_model_argument(p)
    _model_args_argument(p)
    p.add_argument("--plan", dest="plan_path", help="plan.json to prune MODEL with (a run directory holds its own)")
    p.add_argument("--input", default=None, metavar="C,H,W", help="input shape for MODEL (default 3,32,32)")
    p.add_argument("--num-classes", type=int, default=10, metavar="N", help="classifier outputs for MODEL (default 10)")
    p.add_argument("--batch", type=int, default=1, help="inputs per run (default 1)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's default)")
    p.add_argument("--runtime", choices=bench_runtimes(), default=None,
                   help="default torch, or with --file the runtime of the file's format")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (torch runtime only)")
    p.add_argument("--min-time", type=number, default=2.0, metavar="S", help="time at least S seconds (default 2)")
    p.add_argument("--min-repeats", type=int, default=50, metavar="N", help="and at least N runs (default 50)")
    _int8_arguments(p)
    _energy_model_argument(p)
    p.add_argument("--calibrate-energy", default=None, metavar="FILE.json",
                   help="measure joules per inference with this device's meter (RAPL, NVML, Jetson INA3221) and write "
                        "an energy model whose estimate for this model matches it (batch 1)")
    p.add_argument("--file", "--onnx", dest="onnx", default=None, metavar="FILE",
                   help="time this exported file of the run (its precision as the file states) instead of exporting "
                        "the run's model; no dense comparison")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 3 when the run's plan had a budget and a limit fails on what was timed")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _int8_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--int8", action="store_true",
                   help="the statically quantised int8 model (ONNX QDQ; PT2E for ExecuTorch and LiteRT), calibrated "
                        "on the run's training images")
    p.add_argument("--calibration-images", type=int, default=256, metavar="N",
                   help="training images that calibrate the int8 model (default 256)")
    p.add_argument("--data-dir", default=None, help="where the run's data lives now (default: as recorded)")


def run_export(args) -> None:
    result = export_run(args.run, args.format, args.out, model=args.model, int8=args.int8,
                        calibration_images=args.calibration_images, data_dir=args.data_dir,
                        allow_changed_source=args.allow_changed_source, dynamic_batch=args.dynamic_batch,
                        check=not args.no_check)
    print_record(result, args, report.export_text(result))


@command("export", "write a run's model for deployment (ONNX, ORT, ExecuTorch, LiteRT: fp32 or int8; TorchScript) "
                   "and check it in its runtime")(run_export)
def _(p):
    p.add_argument("run", metavar="RUN_DIR", help="run directory written by 'cdprune train'")
    _run_model_argument(p)
    p.add_argument("--format", choices=list(FORMATS), default="onnx", help="default onnx")
    defaults = [f"RUN_DIR/{fmt.file_name(precision)}" + ("" if precision == "fp32" else f" (--{precision})")
                for fmt in FORMATS.values() for precision in fmt.precisions]
    p.add_argument("--out", default=None, metavar="FILE",
                   help=f"default {', '.join(defaults[:-1])} or {defaults[-1]}" if len(defaults) > 1 else
                   f"default {defaults[0]}")
    _int8_arguments(p)
    p.add_argument("--dynamic-batch", action="store_true",
                   help="a dynamic batch axis (onnx, ort) instead of the fixed batch of 1 that phones and NNAPI run best")
    p.add_argument("--no-check", action="store_true",
                   help="skip testing the file in its runtime (test-set score, batch-1 latency at 1 and 2 threads)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


# ---- compare / sweep ---------------------------------------------------------------------------

def _csv(text: str, kind=str) -> list:
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CdpruneError(f"bad list '{text}'", "give comma-separated values, e.g. 0.3,0.5,0.7") from None


def _backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: one run after another here (default); ray: each run as a Ray task")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto', or ray://HOST:10001); default: start one on this machine")
    p.add_argument("--task-cpus", type=number, default=1, metavar="N",
                   help="CPUs each Ray task reserves, also its PyTorch threads (default 1)")
    p.add_argument("--task-gpus", type=number, default=0, metavar="N", help="GPUs each Ray task reserves (default 0)")


def _train_budget_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-budget", default=None, metavar="dense-epochs=N",
                   help="give every method the training FLOPs of N epochs of the dense model (3 × forward MACs per "
                        "image): epochs = floor(N × dense FLOPs / method FLOPs), at least 1; a ranking method's "
                        "dense stage counts too. Replaces --epochs")


def _resources(args) -> Resources:
    if args.backend == "local" and (args.address or args.task_cpus != 1 or args.task_gpus):
        raise CdpruneError("--address, --task-cpus and --task-gpus apply to --backend ray only", "add --backend ray")
    if args.task_cpus < 1 or args.task_gpus < 0:
        raise CdpruneError(f"--task-cpus must be >= 1 and --task-gpus >= 0 (got {args.task_cpus:g}, {args.task_gpus:g})")
    return Resources(cpus=args.task_cpus, gpus=args.task_gpus, address=args.address)


def run_compare(args) -> None:
    settings = _settings(args, args.model)
    if args.budget is not None and (args.target is not None or args.metric is not None):
        raise CdpruneError(f"--budget and {'--target' if args.target is not None else '--metric'} both say how far "
                           "to prune", "give a budget, or a target with its metric")
    budget = _budget(args, args.budget)
    target = None if budget is not None else 0.5 if args.target is None else args.target
    metric = None if budget is not None else args.metric or "flops"
    goal = budget.slug if budget is not None else f"{metric}{target:g}"
    out = args.out or f"runs/compare-{_slug(args.model)}-{_slug(args.data)}-{goal}"
    result = compare(out, settings, _csv(args.methods), target, metric=metric, seeds=args.seeds,
                     planner=_planner(args), download=args.download, progress=not args.no_progress, backend=args.backend,
                     resources=_resources(args), budget=budget, train_budget=args.train_budget)
    print_record(result, args, report.compare_text(result, settings))


@command("compare", "train methods and baselines to the same target and compare accuracy and cost")(run_compare)
def _(p):
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--target", type=number, default=None,
                   help="reduction every method reaches (default 0.5; not with --budget)")
    # A metric timed on this machine would differ between the methods' machines: not one to hold equal.
    choices = [m.name for m in METRICS.values() if not m.measured]
    modelled = ", ".join(m.name for m in METRICS.values() if not m.measured and not m.sized)
    p.add_argument("--metric", default=None, choices=choices,
                   help=f"the metric the target applies to, for every method (default flops"
                        f"{f'; {modelled}: the modes and dense only' if modelled else ''})")
    _budget_arguments(p)
    p.add_argument("--methods", default="dense,pa,fa,ma,uniform,layer-random,l1",
                   help=f"comma-separated, from {', '.join(METHODS)} (default dense,pa,fa,ma,uniform,layer-random,l1)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per method: --seed, --seed+1, … (default 1)")
    _planner_arguments(p)
    p.add_argument("--out", default=None, help="output directory (default runs/compare-MODEL-DATA-METRICTARGET, with "
                                              "--budget runs/compare-MODEL-DATA-LIMITS)")
    _training_arguments(p, {})
    _backend_arguments(p)
    _train_budget_argument(p)


def _sweep_budgets(args) -> list[Budget] | None:
    """The budgets of --budgets, each as --budget takes it; an empty entry is refused."""
    if args.budgets is None:
        _budget(args, None)
        return None
    parts = [part.strip() for part in args.budgets.split(";")]
    if not any(parts) or not all(parts):
        raise CdpruneError(f"--budgets '{args.budgets}' has an empty budget", "separate budgets with one ';', e.g. "
                           "'latency=2ms;latency=1ms'")
    return [_budget(args, part) for part in parts]


def run_sweep(args) -> None:
    settings = _settings(args, args.model)
    if args.budgets is not None and args.targets is not None:
        raise CdpruneError("--budgets and --targets both say how far to prune", "give one of them")
    budgets = _sweep_budgets(args)
    targets = None if budgets else _csv(args.targets or "0.3,0.5,0.7,0.9", float)
    out = args.out or f"runs/sweep-{_slug(args.model)}-{_slug(args.data)}"
    result = sweep(out, settings, _csv(args.modes), targets, planner=_planner(args),
                   download=args.download,
                   progress=not args.no_progress, bench_time_s=args.bench_time, backend=args.backend,
                   resources=_resources(args), fps=args.fps, budgets=budgets,
                   train_budget=args.train_budget)
    print_record(result, args, report.sweep_text(result))


@command("sweep", "trade-off curves: accuracy against params, FLOPs, memory, latency, energy, CPU")(run_sweep)
def _(p):
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--modes", default="pa,fa,ma", help="comma-separated modes (default pa,fa,ma)")
    p.add_argument("--targets", default=None, help="comma-separated targets (default 0.3,0.5,0.7,0.9; not with --budgets)")
    _budget_arguments(p, sweep=True)
    p.add_argument("--fps", type=number, default=10.0, metavar="N",
                   help="frame rate for the CPU panel: the share of one core the model takes at N inferences/s "
                        "(default 10)")
    p.add_argument("--bench-time", type=number, default=1.0, metavar="S",
                   help="seconds of timed inference per point for latency and CPU (default 1)")
    p.add_argument("--out", default=None, help="output directory (default runs/sweep-MODEL-DATA)")
    _planner_arguments(p)
    _training_arguments(p, {})
    _backend_arguments(p)
    _train_budget_argument(p)


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
# These resume their runs whenever they are run again, and so have no --resume flag.
RESUMING_COMMANDS = ("run", "compare", "sweep")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        group = distributed.from_environment()
        if group.active and args.command not in TORCHRUN_COMMANDS:
            raise CdpruneError(f"'cdprune {args.command}' does not run under torchrun; only 'cdprune train' does "
                               "(spread compare and sweep over machines with --backend ray)")
        # Rank 0 prints the results, once.
        with contextlib.nullcontext() if group.is_main else contextlib.redirect_stdout(io.StringIO()):
            args.handler(args)
    except BrokenPipeError:  # output piped into `head` and the like (an OSError: caught before them)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except CheckFailed as exc:
        print(f"cdprune: error: {exc}", file=sys.stderr)
        return 3
    except TrainingInterrupted as exc:
        if args.command in RESUMING_COMMANDS:  # they take no --resume: the same command continues
            exc = f"training interrupted after epoch {exc.last_epoch}; run the same command again to continue " \
                  "(finished runs are reused)"
        print(f"cdprune: {exc}", file=sys.stderr)
        return 130
    except CdpruneError as exc:
        print(f"cdprune: error: {render_error(exc, _flags(parser, args.command))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cdprune: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # an unwritable --out, a full disk: the user's to fix, not a crash
        print(f"cdprune: error: {_os_error(exc)}", file=sys.stderr)
        return 1 if exc.errno == errno.ENOSPC else 2
    finally:
        distributed.shutdown()
    return 0


def render_error(exc: CdpruneError, flags: set[str]) -> str:
    """The one-line message of a user error, naming the flag that fixes it where the command has one."""
    flag = "--" + exc.option.replace("_", "-") if exc.option else None
    return f"{exc} ({flag})" if flag in flags and flag not in str(exc) else str(exc)


def _flags(parser: argparse.ArgumentParser, command: str) -> set[str]:
    sub = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices[command]._option_string_actions)


def _os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full while writing {where}: free some space and run the same command again (finished work is kept)"
    reason = exc.strerror or str(exc)
    return f"cannot write or read {where} ({reason}): choose a path you can write to, e.g. another --out"


if __name__ == "__main__":
    sys.exit(main())
