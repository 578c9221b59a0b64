"""The task registry: `register_task`, `create`, `list_tasks` (one registration per task file)."""
from __future__ import annotations


from .. import registry
from ..errors import CdpruneError
from ._base import Task

DEFAULT_TASK = "classify"  # what a run trains when it names no task
_TASKS: dict[str, type[Task]] = {}  # in registration order: the order of --task's choices


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator (or call) that makes a Task subclass available by its `name`. A name registered
    twice warns, and the later class replaces the earlier one."""
    return registry.add(_TASKS, cls.name, cls, "task")


def list_tasks() -> list[str]:
    """The registered task names, in registration order."""
    return list(_TASKS)


def get_task(name: str) -> type[Task]:
    """The class registered as `name`."""
    if name not in _TASKS:
        raise CdpruneError(f"unknown task {name!r}", f"choose one of {', '.join(_TASKS)} (--task)")
    return _TASKS[name]


def by_score(score_name: str) -> Task:
    """A task (default settings) whose headline is `score_name`: how records that name only their score
    (summaries, sweep points, re-tests) find its units and extra scores. Tasks sharing a score share both."""
    for cls in _TASKS.values():
        if cls.score.name == score_name:
            return cls()
    raise CdpruneError(f"no registered task scores {score_name!r}", "register the task that wrote this record")


def create(name: str = DEFAULT_TASK, *, noise: float | None = None, scale: int | None = None,
           loss: str | None = None) -> Task:
    """A checked task: `noise` (denoise, σ on 0–255, default 25), `scale` (sr: 2 or 4, default 2),
    `loss` (denoise and sr: "mse", the default, or "l1"). A setting the task does not take is refused,
    naming the tasks that take it."""
    cls = get_task(name)
    given = {"noise": noise, "scale": scale}
    for option, value in given.items():
        if value is not None and option not in cls.options:
            owners = [n for n, c in _TASKS.items() if option in c.options]
            raise CdpruneError(f"{option} (--{option}) applies to task {' or '.join(owners)}, not {name}", "drop it or "
                               f"add --task {owners[0]}")
    if loss is not None and loss not in cls.losses and len(cls.losses) == 1:
        owners = [n for n, c in _TASKS.items() if loss in c.losses] or \
                 [n for n, c in _TASKS.items() if len(c.losses) > 1]
        raise CdpruneError(f"loss (--loss) {loss!r} does not apply to task {name}, which trains with "
                           f"{cls.losses[0]}", f"drop it, or choose --task {' or '.join(owners)}")
    return cls(loss=loss, **{k: v for k, v in given.items() if v is not None})

