"""Where the trainings of `compare` and `sweep` run: here, one after another, or as Ray tasks.

A `Task` is one configuration (one method and seed, or one sweep point): a module-level
function and its arguments, so that Ray can ship it to any node. Both backends return the
results by task name. The local backend runs the tasks in order and lets the first error
through, as a plain loop would. The Ray backend runs them side by side with the CPUs and GPUs
each needs, shows a bar over the tasks as they finish, retries a failed task once, and names
every task that still failed; the results of the others are kept either way.
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
                               f"failed after {RETRIES} retry ({listed}); fix the cause and re-run: finished runs "
                               "are reused")


@dataclass(frozen=True)
class Resources:
    """What one Ray task reserves; `cpus` is also its PyTorch thread count."""

    cpus: float = 1
    gpus: float = 0
    address: str | None = None       # a running cluster ("auto", "ray://host:10001"); None starts one here


def run_tasks(tasks: list[Task], backend: str = "local", resources: Resources = Resources(),
              progress: bool = True) -> Outcome:
    if backend == "local":
        return Outcome({t.name: t.fn(*t.args) for t in tasks}, {})
    if backend == "ray":
        return _run_on_ray(tasks, resources, progress)
    raise CdpruneError(f"unknown backend '{backend}': choose from {', '.join(BACKENDS)}")


def _threads_then(threads: int, fn: Callable, args: tuple, *_done):
    """Run `fn` in a Ray worker with as many PyTorch threads as the task reserved CPUs.

    The trailing arguments are the results of the tasks this one waits for; Ray resolves
    them before the call, which is all they are for."""
    import torch

    torch.set_num_threads(max(1, threads))
    return fn(*args)


def _connect(resources: Resources):
    try:
        import ray
    except ImportError:
        raise CdpruneError("--backend ray needs Ray: pip install 'cdprune[distributed]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=resources.address, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = resources.address or "a local instance"
            raise CdpruneError(f"cannot start Ray on {where} ({str(exc).splitlines()[0]}): "
                               "check --address, or start the cluster with 'ray start --head'") from None
    have = ray.cluster_resources()
    for kind, need in (("CPU", resources.cpus), ("GPU", resources.gpus)):
        if need > have.get(kind, 0):
            raise CdpruneError(f"each task needs {need:g} {kind}(s) but the Ray cluster has {have.get(kind, 0):g}: "
                               f"lower --task-{kind.lower()}s or add nodes")
    return ray


def _run_on_ray(tasks: list[Task], resources: Resources, progress: bool) -> Outcome:
    ray = _connect(resources)
    remote = ray.remote(_threads_then).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0)
    by_name = {t.name: t for t in tasks}
    refs: dict[str, Any] = {}      # task name -> ObjectRef of its current attempt
    attempts: dict[str, int] = {}

    def submit(task: Task):
        waits = [refs[task.after]] if task.after in refs else []
        refs[task.name] = remote.remote(int(resources.cpus), task.fn, task.args, *waits)
        attempts[task.name] = attempts.get(task.name, 0) + 1

    for task in tasks:
        submit(task)
    pending = {ref: name for name, ref in refs.items()}
    results, failures = {}, {}
    start = time.perf_counter()
    with tqdm(total=len(tasks), desc="configurations", unit="run", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        def say(line: str) -> None:
            if progress:
                bar.write(line, file=sys.stderr)

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
                    pending[refs[name]] = name
                    continue
                failures[name] = error
                say(f"{name}: FAILED ({error})")
            else:
                say(f"{name}: done after {time.perf_counter() - start:.0f} s")
            bar.update(1)
    return Outcome(results, failures)


def _reason(exc: Exception) -> str:
    """The innermost error's one-line message (Ray wraps a task's exception in its own)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".rstrip(": ")
