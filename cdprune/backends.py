"""Where the trainings of `compare` and `sweep` run: here, one after another, or as Ray tasks.

A `Task` is one configuration (one method and seed, or one sweep point): a module-level
function and its arguments, so that Ray can ship it to any node. A task may wait for another
(`after`): both backends start it only once that one has finished, wherever the two stand in
the list, and otherwise keep the list's order. Both backends return the results by task name.
The local backend runs the tasks one by one and lets the first error through, as a plain loop
would. The Ray backend runs them side by side with the CPUs and GPUs each needs, shows a bar
over the tasks as they finish, retries a failed task once, and names every task that still
failed (a task whose dependency failed is not run, and is named too); the results of the
others are kept either way.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from tqdm import tqdm

from .errors import CdpruneError

BACKENDS = ("local", "ray")
RETRIES = 1


@dataclass(frozen=True)
class Task:
    name: str                        # how progress and failure reports call it
    fn: Callable[..., Any]           # a module-level function: Ray pickles it by reference
    args: tuple = ()
    after: str | None = None         # a task whose files this one reads: it runs only once that one is done


@dataclass
class Outcome:
    results: dict[str, Any]          # task name -> what its function returned
    failures: dict[str, str]         # task name -> the error of its last attempt

    def raise_failures(self) -> None:
        """One error naming every configuration that failed; the finished ones stay on disk."""
        if self.failures:
            listed = "; ".join(f"{name}: {error}" for name, error in self.failures.items())
            raise CdpruneError(f"{len(self.failures)} of {len(self.failures) + len(self.results)} configurations "
                               f"failed after {RETRIES} retry ({listed}); fix the cause and re-run", "finished runs "
                               "are reused")


@dataclass(frozen=True)
class Resources:
    """What one Ray task reserves; `cpus` is also its PyTorch thread count."""

    cpus: float = 1
    gpus: float = 0
    address: str | None = None       # a running cluster ("auto", "ray://host:10001"); None starts one here


def run_tasks(tasks: list[Task], backend: str = "local", resources: Resources = Resources(),
              progress: bool = True) -> Outcome:
    if backend not in BACKENDS:
        raise CdpruneError(f"unknown backend '{backend}'", f"choose from {', '.join(BACKENDS)}")
    ordered = dependency_order(tasks)
    if backend == "local":
        done = {t.name: t.fn(*t.args) for t in ordered}
        return Outcome({t.name: done[t.name] for t in tasks}, {})
    return _run_on_ray(ordered, resources, progress)


def dependency_order(tasks: list[Task]) -> list[Task]:
    """The tasks reordered so that each comes after the task it waits for: at every point the
    first listed task that no longer waits comes next, so a list that needs no reordering keeps
    its order."""
    names = {t.name for t in tasks}
    for t in tasks:
        if t.after is not None and t.after not in names:
            raise CdpruneError(f"task {t.name!r} waits for {t.after!r}, which is not among the tasks",
                               "add that task or drop the dependency")
    ordered: list[Task] = []
    placed: set[str] = set()
    rest = list(tasks)
    while rest:
        ready = next((i for i, t in enumerate(rest) if t.after is None or t.after in placed), None)
        if ready is None:  # every task left waits for another one left: follow the chain round
            after = {t.name: t.after for t in rest}
            chain = [rest[0].name]
            while after[chain[-1]] not in chain:
                chain.append(after[chain[-1]])
            cycle = chain[chain.index(after[chain[-1]]):] + [after[chain[-1]]]
            raise CdpruneError(f"tasks wait for each other in a cycle ({' -> '.join(cycle)})",
                               "break the cycle by dropping one dependency")
        task = rest.pop(ready)
        ordered.append(task)
        placed.add(task.name)
    return ordered


def _threads_then(threads: int, fn: Callable, args: tuple):
    """Run `fn` in a Ray worker with as many PyTorch threads as the task reserved CPUs."""
    import torch

    torch.set_num_threads(max(1, threads))
    return fn(*args)


def _connect(resources: Resources):
    try:
        import ray
    except ImportError:
        raise CdpruneError("--backend ray needs Ray", "pip install 'cdprune[distributed]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=resources.address, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = resources.address or "a local instance"
            raise CdpruneError(f"cannot start Ray on {where} ({str(exc).splitlines()[0]})",
                               "check --address, or start the cluster with 'ray start --head'") from None
    have = ray.cluster_resources()
    for kind, need in (("CPU", resources.cpus), ("GPU", resources.gpus)):
        if need > have.get(kind, 0):
            raise CdpruneError(f"each task needs {need:g} {kind}(s) but the Ray cluster has {have.get(kind, 0):g}",
                               f"lower --task-{kind.lower()}s or add nodes")
    return ray


def _run_on_ray(tasks: list[Task], resources: Resources, progress: bool) -> Outcome:
    """Run `tasks`, given in dependency order, as Ray tasks.

    A waiting task is submitted only once its dependency has succeeded, not up front with the
    dependency's result as an argument: a failed attempt that is retried would otherwise fail its
    dependents too (Ray passes the error on), spending their retry and leaving them failed even
    when the retry succeeds."""
    ray = _connect(resources)
    remote = ray.remote(_threads_then).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0)
    waiting: dict[str, list[Task]] = {}  # task name -> the tasks that wait for it, in order
    for task in tasks:
        if task.after is not None:
            waiting.setdefault(task.after, []).append(task)
    pending: dict[Any, str] = {}  # ObjectRef of a running attempt -> task name
    attempts: dict[str, int] = {}
    by_name = {t.name: t for t in tasks}

    def submit(task: Task) -> None:
        pending[remote.remote(int(resources.cpus), task.fn, task.args)] = task.name
        attempts[task.name] = attempts.get(task.name, 0) + 1

    for task in tasks:
        if task.after is None:
            submit(task)
    results, failures = {}, {}
    start = time.perf_counter()
    with tqdm(total=len(tasks), desc="configurations", unit="run", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        def say(line: str) -> None:
            if progress:
                bar.write(line, file=sys.stderr)

        def skip_dependents(name: str) -> None:
            for task in waiting.pop(name, []):
                failures[task.name] = f"not run: {name} failed"
                say(f"{task.name}: NOT RUN ({name} failed)")
                bar.update(1)
                skip_dependents(task.name)

        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(ready)
            try:
                results[name] = ray.get(ready)
            except Exception as exc:  # the task's own error, or its worker died
                error = _reason(exc)
                if attempts[name] <= RETRIES:
                    say(f"{name}: failed ({error}); retrying")
                    submit(by_name[name])
                    continue
                failures[name] = error
                say(f"{name}: FAILED ({error})")
                bar.update(1)
                skip_dependents(name)
            else:
                say(f"{name}: done after {time.perf_counter() - start:.0f} s")
                bar.update(1)
                for task in waiting.pop(name, []):
                    submit(task)
    return Outcome(results, failures)


def _reason(exc: Exception) -> str:
    """The innermost error's one-line message (Ray wraps a task's exception in its own)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".rstrip(": ")
