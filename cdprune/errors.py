"""The one exception type for mistakes a user can fix, and its kinds that callers tell apart."""


class CdpruneError(Exception):
    """A user error: bad input, missing file, unreachable target.

    The message is one line that names the problem and the fix; the CLI
    prints it and exits with code 2.
    """


class UnreachableTarget(CdpruneError):
    """A target reduction or budget that the model cannot reach with the given floor.

    Callers that sweep over targets (`sweep`) catch this type to record the point as
    unreachable instead of failing the whole job.
    """
