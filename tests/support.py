"""Helpers shared by the CLI tests."""
from cdprune.cli import main


def run_cli(capsys, *argv):
    """Run `cdprune ARGV` in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
