"""The one exception type for mistakes a user can fix."""


class CdpruneError(Exception):
    """A user error: bad input, missing file, unreachable target.

    The message is one line that names the problem and the fix; the CLI
    prints it and exits with code 2.
    """
