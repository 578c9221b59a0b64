"""Regenerate the output shown in README.md and docs/*.md, so that no shown output is edited by hand.

    python docs/render.py              # rewrite every stale block in place
    python docs/render.py --check      # change nothing; exit 1 and name every stale block
    python docs/render.py --volatile   # also re-run the blocks whose output holds timings of this machine

Run it from anywhere, with cdprune importable (installed, or the repository on PYTHONPATH; the script
adds the repository root itself). tests/test_docs.py runs the check on every non-volatile block.

A rendered block is the text between an opening and a closing HTML comment, which Markdown does not show:

    <!-- render command: cdprune profile vgg16 -->
    ...replaced...
    <!-- /render -->

The opening comment is `render KIND [OPTION ...]: ARGUMENT`. Kinds:

- `command: cdprune ...`: runs the command in-process (`cdprune.cli.main`) and shows `$ command` and
  its standard output in a fenced block. The commands of one file run in order in one temporary
  folder, so a block may use a file an earlier block wrote (`prune` writes plan.json, `bench --plan
  plan.json` reads it). Option `head=N` keeps the first N lines of the output. Option `volatile`
  marks output that holds this machine's timings: `--check` does not compare it and only
  `--volatile` re-runs it (on an otherwise idle machine, since the numbers are measurements).
  Only fast commands belong here (seconds: profile, prune); training commands do not.
- `run-summary: FILE`: what `cdprune run` prints, formatted by cdprune from FILE, a committed copy of
  the `summary.json` that the main job writes into its run folder. Option `out=DIR` is the run
  folder the printed output names. After re-measuring the quick start, copy the new summary.json
  to FILE and run this script.
- `options: COMMAND`: the options of `cdprune COMMAND` as a Markdown table, read from the CLI's
  argparse parser. `--check` also fails when docs/cli.md has no `options` block for a command of the CLI.

A kind this script does not know or a failing command is an error (exit 2) that names the file and
line, and nothing is written. A missing run-summary FILE leaves its block as it is and counts as stale.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCUMENTS = ("README.md", "docs/*.md")
BLOCK = re.compile(r"^<!-- render (?P<head>[^:]*?): (?P<arg>.*?) -->\n(?P<body>.*?)^<!-- /render -->$",
                   re.MULTILINE | re.DOTALL)
CLI_PAGE = "docs/cli.md"


class RenderError(Exception):
    """A block that cannot be rendered: its file, line and the reason."""


class MissingSource(Exception):
    """A run-summary block whose committed file is not there yet: the block is left as it is, and stale."""


@contextlib.contextmanager
def _inside(folder: str):
    """Run the block in `folder` (contextlib.chdir needs Python 3.11; cdprune supports 3.10)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def documents(root: Path = ROOT) -> list[Path]:
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern)})


def parse_head(head: str) -> tuple[str, dict]:
    """'command head=8 volatile' -> ('command', {'head': '8', 'volatile': True})."""
    kind, *words = head.split()
    options = {}
    for word in words:
        key, sep, value = word.partition("=")
        options[key] = value if sep else True
    return kind, options


def fenced(text: str) -> str:
    return f"```text\n{text.rstrip()}\n```\n"


def run_command(line: str, head: int | None = None) -> str:
    """`$ line` and what `cdprune ...` prints on stdout, run in-process in the current folder."""
    from cdprune.cli import main

    argv = shlex.split(line)
    if not argv or argv[0] != "cdprune":
        raise RenderError(f"a command block runs cdprune only, got {line!r}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv[1:])
        except SystemExit as exc:
            code = exc.code
    if code:
        raise RenderError(f"'{line}' exited with {code}: {err.getvalue().strip()}")
    lines = out.getvalue().rstrip("\n").split("\n")
    if head is not None:
        lines = lines[:head]
    return fenced("\n".join([f"$ {line}", *lines]))


def run_summary(path: str, out: str) -> str:
    """What `cdprune run` printed, re-formatted by cdprune from the run's committed summary.json."""
    from cdprune.experiment import RunComparison
    from cdprune.report import main_job_text
    from cdprune.runs import RunMetrics, RunSettings

    source = ROOT / path
    if not source.is_file():
        raise MissingSource(f"{path} is missing: copy the summary.json of a quick-start run there")
    data = json.loads(source.read_text())
    result = RunComparison(out, RunSettings(**data["settings"]), [RunMetrics.from_dict(r) for r in data["runs"]])
    return fenced("$ cdprune run\n" + main_job_text(result))


def subparsers() -> dict[str, argparse.ArgumentParser]:
    from cdprune.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _cell(text: str) -> str:
    """Text for one Markdown table cell: one line, no column breaks, no HTML tags."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return (action.metavar or action.dest).upper()
    name = max(action.option_strings, key=len)
    if action.nargs == 0:
        return name
    if action.metavar:
        return f"{name} {action.metavar}"
    if action.choices:
        return f"{name} {{{','.join(map(str, action.choices))}}}"
    return f"{name} {action.dest.upper()}"


def options_table(name: str) -> str:
    """`cdprune NAME`'s synopsis and a table of its arguments, as argparse holds them."""
    commands = subparsers()
    if name not in commands:
        raise RenderError(f"no command '{name}' in the CLI (it has {', '.join(commands)})")
    parser = commands[name]
    formatter = parser._get_formatter()
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    positionals = " ".join(_flag(a) for a in actions if not a.option_strings)
    rows = []
    for action in actions:
        text = formatter._expand_help(action) if action.help else ""
        rows.append(f"| `{_cell(_flag(action))}` | {_cell(text)} |")
    return "\n".join([f"`cdprune {name} {positionals} [options]`".replace("  ", " "), "",
                      "| argument | meaning |", "|---|---|", *rows]) + "\n"


def render_block(kind: str, options: dict, arg: str, volatile: bool) -> str | None:
    """The block's new body, or None where it is left as it is (a volatile block without --volatile)."""
    if kind == "command":
        if options.get("volatile") and not volatile:
            return None
        return run_command(arg, int(options["head"]) if "head" in options else None)
    if kind == "run-summary":
        if "out" not in options:
            raise RenderError("a run-summary block needs out=RUN_DIR")
        return run_summary(arg, options["out"])
    if kind == "options":
        return options_table(arg)
    raise RenderError(f"unknown kind '{kind}' (command, run-summary or options)")


def render_text(text: str, where: str, volatile: bool = False) -> tuple[str, list[str], list[str]]:
    """The document with every block rendered, the blocks that changed as 'file:line: opening', and the
    blocks that could not be checked (a missing run-summary file)."""
    pieces, changed, unchecked, end = [], [], [], 0
    with tempfile.TemporaryDirectory() as folder, _inside(folder):
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            kind, options = parse_head(match["head"])
            try:
                body = render_block(kind, options, match["arg"], volatile)
            except RenderError as exc:
                raise RenderError(f"{where}:{line}: {exc}") from None
            except MissingSource as exc:
                unchecked.append(f"{where}:{line}: {exc}")
                body = None
            pieces.append(text[end:match.start("body")])
            if body is not None and body != match["body"]:
                changed.append(f"{where}:{line}: {match['head']}: {match['arg']}")
                pieces.append(body)
            else:
                pieces.append(match["body"])
            end = match.end("body")
    pieces.append(text[end:])
    return "".join(pieces), changed, unchecked


def missing_options(root: Path = ROOT) -> list[str]:
    """The CLI's commands that docs/cli.md has no options block for."""
    page = root / CLI_PAGE
    shown = {m["arg"] for m in BLOCK.finditer(page.read_text())
             if parse_head(m["head"])[0] == "options"} if page.is_file() else set()
    return [f"{CLI_PAGE}: no '<!-- render options: {name} -->' block" for name in subparsers() if name not in shown]


def render(root: Path = ROOT, check: bool = False, volatile: bool = False) -> tuple[list[str], list[str]]:
    """Render every document under `root`; return the blocks that are (with check) or were stale, and
    the blocks that could not be checked. With check, write nothing."""
    stale, unchecked, rendered = [], [], {}
    for path in documents(root):
        text = path.read_text()
        new, changed, missing = render_text(text, str(path.relative_to(root)), volatile)
        stale += changed
        unchecked += missing
        if new != text:
            rendered[path] = new
    if not check:
        for path, new in rendered.items():
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_text(new)
            os.replace(temporary, path)
    return stale, unchecked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block is stale")
    parser.add_argument("--volatile", action="store_true", help="also re-run blocks that show this machine's timings")
    args = parser.parse_args(argv)
    try:
        stale, unchecked = render(check=args.check, volatile=args.volatile)
        missing = unchecked + missing_options()
    except RenderError as exc:
        print(f"render: error: {exc}", file=sys.stderr)
        return 2
    for item in stale:
        print(("stale: " if args.check else "rendered: ") + item)
    for item in missing:
        print(f"missing: {item}")
    return 1 if missing or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
