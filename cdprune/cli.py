"""The `cdprune` command: parse arguments, call the public API, print.

Each subcommand is one `@command` function; user errors (CdpruneError) become
one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from . import models
from .complexity import parse_shape, profile
from .errors import CdpruneError
from .pruning import MODES, PruningPlan, plan
from .report import profile_table, reduction_table, table

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
    result = plan(model, shape, args.mode, args.target, seed=args.seed, step=args.step, floor=args.floor,
                  round_to=args.round_to)
    out = result.save(args.out)
    if args.json:
        print_json({**result.to_dict(), "plan_path": str(out)})
        return
    mode = MODES[result.mode]
    print(f"{args.model} · mode {result.mode} ({mode.title}) · target {result.target:g} · seed {result.seed} · "
          f"{result.steps} draws")
    print(reduction_table(result.before, result.after))
    print()
    rows = [[u.name, str(len(u.convs)), str(u.channels), str(len(u.kept)), f"{1 - len(u.kept) / u.channels:.0%}"]
            for u in result.units]
    print(table(["unit", "convs", "channels", "kept", "removed"], rows))
    print(f"\nplan written to {out}")


@command("prune", "sample a complexity-driven pruning plan and write it")(run_prune)
def _(p):
    _model_arguments(p)
    p.add_argument("--mode", default="fa", help=f"what to reduce: {', '.join(f'{m.name} ({m.title})' for m in MODES.values())}")
    p.add_argument("--target", type=float, default=0.5, help="fraction of the mode's metric to remove, in (0, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=float, default=0.1, help="fraction of a unit's channels removed per draw (default 0.1)")
    p.add_argument("--floor", type=float, default=0.1, help="fraction of a unit's channels always kept (default 0.1)")
    p.add_argument("--round-to", type=int, default=1, metavar="R", help="keep channel counts multiples of R (8 or 16 suit SIMD/tensor cores)")
    p.add_argument("--out", default="plan.json", help="where to write the plan (default plan.json)")


# ---- entry point -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdprune", description="Complexity-driven structured pruning of CNNs for edge devices.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (configure, run, help) in _COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        configure(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CdpruneError as exc:
        print(f"cdprune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cdprune: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
