"""The documentation: shown output is what the commands print, links lead somewhere, citations exist."""
import importlib.util
import re
from pathlib import Path

import pytest

from tests.support import TINY_TRAIN, run_cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _render_module():
    spec = importlib.util.spec_from_file_location("docs_render", ROOT / "docs" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


def test_every_rendered_block_is_current():
    # A missing run-summary file is reported apart (it comes from the quick start's run), not as stale.
    stale, _ = render.render(check=True)
    assert stale == [], "run: python docs/render.py\n" + "\n".join(stale)


def test_cli_page_shows_every_command():
    assert render.missing_options() == []


def _write(root: Path, text: str) -> Path:
    (root / "docs").mkdir()
    page = root / "README.md"
    page.write_text(text)
    return page


def test_check_names_a_stale_block_and_render_rewrites_it(tmp_path):
    stale_text = ("intro\n\n<!-- render command: cdprune profile alexnet --input 1,28,28 -->\n```text\n"
                  "$ cdprune profile alexnet --input 1,28,28\nold output\n```\n<!-- /render -->\n\nafter\n")
    page = _write(tmp_path, stale_text)
    stale, _ = render.render(tmp_path, check=True)
    assert stale == ["README.md:3: command: cdprune profile alexnet --input 1,28,28"]
    assert page.read_text() == stale_text  # --check writes nothing

    render.render(tmp_path)
    text = page.read_text()
    assert "old output" not in text and "\ntotal " in text
    assert text.startswith("intro\n\n<!-- render command:") and text.endswith("<!-- /render -->\n\nafter\n")
    assert render.render(tmp_path, check=True) == ([], [])


def test_head_keeps_the_first_lines_and_commands_share_a_folder(tmp_path):
    train = "cdprune train alexnet --plan small.json --out run " + " ".join(TINY_TRAIN)
    page = _write(tmp_path, "<!-- render command: cdprune prune alexnet --out small.json -->\n<!-- /render -->\n"
                            f"<!-- render command head=1: {train} -->\n<!-- /render -->\n")
    render.render(tmp_path)
    first, second, _ = page.read_text().split("<!-- /render -->")
    assert "plan written to small.json" in first
    # train read the plan the block before wrote; only the first line of its output is kept
    shown = second.split("```text\n")[1].split("\n```")[0].split("\n")
    assert shown[0] == f"$ {train}" and len(shown) == 2 and "fa-0.5" in shown[1]


def test_volatile_blocks_are_left_alone_unless_asked(tmp_path):
    text = "<!-- render command volatile: cdprune profile alexnet -->\nmeasured here\n<!-- /render -->\n"
    page = _write(tmp_path, text)
    assert render.render(tmp_path, check=True) == ([], [])
    render.render(tmp_path, volatile=True)
    assert "measured here" not in page.read_text() and "$ cdprune profile alexnet" in page.read_text()


def test_run_summary_is_what_cdprune_run_printed(tmp_path, capsys):
    out = tmp_path / "job"
    code, printed, _ = run_cli(capsys, "run", "--model", "alexnet", "--out", out, *TINY_TRAIN)
    assert code == 0
    page = _write(tmp_path, f"<!-- render run-summary out={out}: {out / 'summary.json'} -->\n<!-- /render -->\n")
    render.render(tmp_path)
    assert page.read_text() == (f"<!-- render run-summary out={out}: {out / 'summary.json'} -->\n"
                                f"```text\n$ cdprune run\n{printed.rstrip()}\n```\n<!-- /render -->\n")


def test_a_missing_summary_is_reported_and_the_block_kept(tmp_path):
    text = "<!-- render run-summary out=runs/x: nowhere/summary.json -->\nkept\n<!-- /render -->\n"
    page = _write(tmp_path, text)
    stale, unchecked = render.render(tmp_path, check=True)
    assert stale == [] and len(unchecked) == 1 and "nowhere/summary.json is missing" in unchecked[0]
    assert page.read_text() == text


@pytest.mark.parametrize("block, message", [
    ("<!-- render picture: x -->\n<!-- /render -->\n", "unknown kind 'picture'"),
    ("<!-- render command: ls -l -->\n<!-- /render -->\n", "runs cdprune only"),
    ("<!-- render command: cdprune profile no-such-model -->\n<!-- /render -->\n", "exited with 2"),
    ("<!-- render options: no-such-command -->\n<!-- /render -->\n", "no command 'no-such-command'"),
    ("<!-- render run-summary: x.json -->\n<!-- /render -->\n", "needs out=RUN_DIR"),
])
def test_a_block_that_cannot_render_is_an_error_and_nothing_is_written(tmp_path, block, message):
    page = _write(tmp_path, "<!-- render command: cdprune profile alexnet -->\nold\n<!-- /render -->\n" + block)
    before = page.read_text()
    with pytest.raises(render.RenderError, match=re.escape(message)) as error:
        render.render(tmp_path)
    assert str(error.value).startswith("README.md:4: ")
    assert page.read_text() == before


def test_options_table_lists_every_argument_of_the_parser():
    table = render.options_table("prune")
    assert table.startswith("`cdprune prune MODEL [options]`\n")
    for flag in ("`MODEL`", "`--mode MODE`", "`--target TARGET`", "`--budget LIMITS`", "`--round-to R`",
                 "`--runtime {torch,onnxruntime}`", "`--verbose`", "`--out OUT`"):
        assert f"| {flag} |" in table
    assert "`-h`" not in table and "--help" not in table


# ---- links -----------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def links(page: Path) -> list[str]:
    return [m[1] for m in LINK.finditer(FENCE.sub("", page.read_text()))]


def test_slug_matches_github_anchors():
    assert slug("The paper's Figures 4–5") == "the-papers-figures-45"
    assert slug("`la` against `fa` at equal FLOPs") == "la-against-fa-at-equal-flops"
    assert slug("compare_fashion_mnist.py") == "compare_fashion_mnistpy"
    assert slug("3.1 Units (`pruning/units.py`)") == "31-units-pruningunitspy"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto: and the like
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if ROOT in file.parents else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.relative_to(ROOT)}")
    assert broken == [], f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_pages_link_to_each_other():
    readme = links(ROOT / "README.md")
    for page in ("docs/cli.md", "docs/results.md", "docs/rationale.md", "docs/design.md"):
        assert page in readme


def test_docstrings_cite_only_documents_in_the_repository():
    citing = [f"{path.relative_to(ROOT)}:{number}"
              for folder in ("cdprune", "tests", "benchmarks") for path in (ROOT / folder).rglob("*.py")
              for number, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"SPEC\s*§", line)]
    assert citing == []
