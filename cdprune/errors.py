"""The one exception type for mistakes a user can fix, and its kinds that callers tell apart."""
from __future__ import annotations


class CdpruneError(Exception):
    """A user error: bad input, missing file, unreachable target.

    It carries its parts as fields, so that no caller has to parse its text:

    - `problem`: what is wrong, naming the input (a file, a value, a setting);
    - `hint`: how to fix it, or None when the problem says it all;
    - `option`: the setting that fixes it, as the Python API names it (`"num_classes"`), or None.
      The CLI shows it as its flag (`--num-classes`); library code need not spell CLI flags.

    `str(error)` is the one-line message `problem: hint`, which the CLI prints before exiting
    with code 2.
    """

    def __init__(self, problem: str, hint: str | None = None, *, option: str | None = None):
        self.problem, self.hint, self.option = problem, hint, option
        super().__init__(problem if hint is None else f"{problem}: {hint}")


class UnreachableTarget(CdpruneError):
    """A target reduction or budget that the model cannot reach with the given floor.

    Callers that sweep over targets (`sweep`) catch this type to record the point as
    unreachable instead of failing the whole job.
    """


class CheckFailed(CdpruneError):
    """A file was written but fails the check that follows it (an export whose fp32 file does not compute
    what the run's model computed). `result` holds what was written and measured; the CLI exits with code 3.
    """

    def __init__(self, problem: str, hint: str | None = None, *, result=None):
        super().__init__(problem, hint)
        self.result = result
